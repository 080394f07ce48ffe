-- Migration 9: how each criterion was judged and scored, and its tags.
--
-- A rubric may mix binary-checklist dimensions and scale dimensions, each scored by its own
-- method, so the verdict kind, scale bounds and scoring method are per criterion (its
-- dimension's); NULL in rows written before this migration (or by an importer that does not
-- set them), where the run's rubric-level values apply. `tags` are the criterion's `tags:`
-- (HealthBench-style axes or themes): `SELECT unnest(tags) AS tag, ... FROM criteria`.
ALTER TABLE criteria ADD COLUMN IF NOT EXISTS verdict_kind VARCHAR;    -- binary | scale
ALTER TABLE criteria ADD COLUMN IF NOT EXISTS scale_min INTEGER;
ALTER TABLE criteria ADD COLUMN IF NOT EXISTS scale_max INTEGER;
ALTER TABLE criteria ADD COLUMN IF NOT EXISTS scoring_method VARCHAR;  -- weighted_points | mean_scale
ALTER TABLE criteria ADD COLUMN IF NOT EXISTS in_overall BOOLEAN;      -- pooled into the sample's overall score
ALTER TABLE criteria ADD COLUMN IF NOT EXISTS tags VARCHAR[];
