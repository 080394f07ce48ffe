-- Migration 5: what is needed to measure how far a judge can be trusted.
--
-- Expert labels (`rubric-judge labels import`): one row per label line of an imported JSON Lines
-- file; re-importing the same file replaces its rows. Binary rubrics label a criterion
-- (label 1 = met, 0 = not met), scale rubrics a dimension (the integer on the rubric's scale).
CREATE TABLE IF NOT EXISTS labels (
    source        VARCHAR NOT NULL,     -- the imported file, as an absolute path
    line          INTEGER NOT NULL,     -- its line number in that file
    rubric_id     VARCHAR,              -- the rubric the labels are for (--rubric), NULL: any
    sample_id     VARCHAR NOT NULL,
    criterion_id  VARCHAR,              -- binary rubrics
    dimension     VARCHAR,              -- scale rubrics
    rater_id      VARCHAR NOT NULL,
    label         DOUBLE NOT NULL,      -- 1/0 (met / not met), or the scale value
    note          VARCHAR,
    imported_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (source, line)
);

-- How runs relate: a judge panel's run and its members' runs, and a bias probe of a run.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS role VARCHAR DEFAULT 'run';  -- run | panel | panel_member | probe
ALTER TABLE runs ADD COLUMN IF NOT EXISTS parent_run_id VARCHAR;      -- member -> its panel run; probe -> the run it probes
ALTER TABLE runs ADD COLUMN IF NOT EXISTS probe VARCHAR;              -- the probe's kind, e.g. swap-images
