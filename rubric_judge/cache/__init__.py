"""Every cache rubric-judge keeps under one folder (--cache-dir): verdicts (verdicts.py, what the
judge cost), metric values (metric_values.py) and report thumbnails (thumbnails.py); one key
scheme (key.py) and one policy for a corrupted, read-only or unwritable store (guard.py)."""
