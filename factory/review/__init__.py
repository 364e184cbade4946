"""`factory review RUN_DIR`: a local page that shows every row of a run and takes a person's decisions."""
