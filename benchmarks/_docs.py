"""The hand-written part of docs/performance.md; `run.py --write-docs` appends the tables."""

INTRO = "# Performance\n\n(placeholder)\n"
