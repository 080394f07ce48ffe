-- Migration 1: the schema of the first release (rubric-judge 0.1), kept verbatim so that a
-- file it wrote is upgraded by the same steps as every other. Never edit a migration that has
-- shipped: add the next one. Tables hold facts (runs, samples, judge calls, verdicts, metric
-- values); views.sql holds scoring.

CREATE TABLE IF NOT EXISTS runs (
    run_id            VARCHAR PRIMARY KEY,  -- sha of (rubric id, version, model, judge model, api base)
    rubric_id         VARCHAR NOT NULL,
    rubric_version    VARCHAR NOT NULL,
    model_name        VARCHAR NOT NULL,     -- the model under test
    judge_model       VARCHAR NOT NULL,     -- litellm model string of the judge
    scoring_method    VARCHAR NOT NULL,     -- weighted_points | mean_scale | pass_rate
    missing_output    VARCHAR NOT NULL,     -- fail | skip
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
