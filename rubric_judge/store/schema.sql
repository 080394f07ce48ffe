-- rubric-judge results database: one DuckDB file, readable by any DuckDB client.
-- Tables hold facts (runs, samples, judge calls, verdicts, metric values); views hold scoring.

CREATE TABLE IF NOT EXISTS runs (
    run_id            VARCHAR PRIMARY KEY,  -- sha of (rubric id, version, model, judge model, api base)
    rubric_id         VARCHAR NOT NULL,
    rubric_version    VARCHAR NOT NULL,
    model_name        VARCHAR NOT NULL,     -- the model under test
    judge_model       VARCHAR NOT NULL,     -- litellm model string of the judge
    scoring_method    VARCHAR NOT NULL,     -- weighted_points | mean_scale | pass_rate
    missing_output    VARCHAR NOT NULL,     -- fail | skip
    unscored_policy   VARCHAR NOT NULL,     -- exclude | fail (count error/unscored verdicts as not met)
    threshold         DOUBLE,               -- pass_rate: score needed to pass
    pass_criterion    VARCHAR,              -- pass_rate: the criterion thresholded (NULL: mean of all)
    scale_min         INTEGER,
    scale_max         INTEGER,
    started_at        TIMESTAMP NOT NULL,
    finished_at       TIMESTAMP,            -- NULL while running or after a crash
    status            VARCHAR NOT NULL,     -- running | finished | stopped (budget) | interrupted
    config            JSON                  -- options of the run, never secrets
);

CREATE TABLE IF NOT EXISTS samples (
    run_id      VARCHAR NOT NULL,
    sample_id   VARCHAR NOT NULL,
    category    VARCHAR,
    modality    VARCHAR,
    missing_outputs VARCHAR[],
    fields      JSON,
    PRIMARY KEY (run_id, sample_id)
);

CREATE TABLE IF NOT EXISTS judge_calls (
    run_id            VARCHAR NOT NULL,
    call_id           VARCHAR NOT NULL,     -- sample/group/replicate
    sample_id         VARCHAR NOT NULL,
    grp               VARCHAR NOT NULL,     -- dimension, criterion or "all"
    replicate         INTEGER NOT NULL,
    cache_key         VARCHAR NOT NULL,
    cache_hit         BOOLEAN NOT NULL,
    attempts          INTEGER NOT NULL,
    status            VARCHAR NOT NULL,     -- ok | error | unscored
    error             VARCHAR,
    latency_ms        DOUBLE,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    cost_usd          DOUBLE,               -- NULL when the judge model has no known price
    prompt            VARCHAR,              -- the rendered prompt text (images by digest)
    response          JSON,                 -- the validated answer
    PRIMARY KEY (run_id, call_id)
);

CREATE TABLE IF NOT EXISTS verdicts (
    run_id        VARCHAR NOT NULL,
    sample_id     VARCHAR NOT NULL,
    criterion_id  VARCHAR NOT NULL,
    replicate     INTEGER NOT NULL,
    dimension     VARCHAR NOT NULL,
    weight        DOUBLE NOT NULL,
    met           BOOLEAN,                  -- binary verdicts; NULL unless status = ok
    score         DOUBLE,                   -- scale verdicts; NULL unless status = ok
    confidence    DOUBLE,
    reasoning     VARCHAR,
    status        VARCHAR NOT NULL,         -- ok | error | unscored | missing_output
    call_id       VARCHAR,
    PRIMARY KEY (run_id, sample_id, criterion_id, replicate)
);

CREATE TABLE IF NOT EXISTS metric_values (
    run_id     VARCHAR NOT NULL,
    sample_id  VARCHAR NOT NULL,
    metric     VARCHAR NOT NULL,
    value      DOUBLE,
    passed     BOOLEAN,
    status     VARCHAR NOT NULL,
    detail     VARCHAR,
    PRIMARY KEY (run_id, sample_id, metric)
);

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
