"""Local failure drills under load (make drills); see drills/__main__.py and docs/dr.md."""
