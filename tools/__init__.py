"""Developer tools run by the Makefile on synthesized templates (summary, cost estimate)."""
