"""`rubric-judge serve`: rubric rewards over HTTP (and in process) for RL trainers."""
