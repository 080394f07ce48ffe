-- Migration 2: how a run counts error/unscored verdicts: exclude (left out of numerator and
-- denominator) or fail (counted as not met, the official scripts' reading). Runs written
-- before the column existed were scored with `exclude`.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS unscored_policy VARCHAR DEFAULT 'exclude';
