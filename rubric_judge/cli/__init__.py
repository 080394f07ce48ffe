"""The `rubric-judge` command line: one thin command per module."""
