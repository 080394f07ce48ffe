"""Planning: a rubric set and a dataset compiled into judge calls, and what they would cost."""
