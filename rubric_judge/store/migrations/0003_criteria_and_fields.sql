-- Migration 3: the criterion texts and the declared sample fields of each run, for the report.
--
-- What was judged, as the rubric stated it, so a report can show each verdict next to its
-- criterion without the rubric files: one row per criterion applicable to a sample (task
-- rubrics differ per sample), `position` its order in the rubric. Absent for imported runs
-- whose importer does not pass the texts.
CREATE TABLE IF NOT EXISTS criteria (
    run_id          VARCHAR NOT NULL,
    sample_id       VARCHAR NOT NULL,
    criterion_id    VARCHAR NOT NULL,
    position        INTEGER NOT NULL,
    dimension       VARCHAR NOT NULL,
    dimension_name  VARCHAR,              -- the dimension's display name
    weight          DOUBLE NOT NULL,
    text            VARCHAR NOT NULL,
    PRIMARY KEY (run_id, sample_id, criterion_id)
);

-- The rubric's declared sample fields per run: which are images, which the model produced
-- (`outputs:`), and the label and order in which the judge saw the images (`images:`).
CREATE TABLE IF NOT EXISTS run_fields (
    run_id     VARCHAR NOT NULL,
    field      VARCHAR NOT NULL,
    kind       VARCHAR NOT NULL,          -- text | image
    is_output  BOOLEAN NOT NULL,          -- produced by the model under test
    label      VARCHAR,                   -- grounding label from `images:`, NULL when not sent
    position   INTEGER,                   -- index in `images:`, NULL when not sent
    PRIMARY KEY (run_id, field)
);
