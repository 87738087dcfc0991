"""Disaster-recovery drills that run and measure (docs/dr.md)."""
