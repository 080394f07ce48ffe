-- Migration 7: runs over part of a manifest (`score --limit N`, `--sample ID`). Such a run ends
-- with status `partial`, and keeps here how many samples its manifest holds, so the leaderboard's
-- `samples_total` (and `compare`'s refusal) reads "2 of 6 samples", not "2 of 2"; every run
-- written since records it. NULL (older runs): samples_total counts the run's `samples` rows.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS manifest_samples INTEGER;
