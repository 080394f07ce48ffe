"""Static HTML report: not implemented yet; query the database with `rubric-judge query`."""
