"""Drop-in reward functions for RL trainers, backed by `rubric-judge serve` or an in-process
`RewardService`: `verl.compute_score` (async) / `compute_score_sync`, and `trl.RubricReward`."""
