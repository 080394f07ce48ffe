-- Migration 6: the statistics `rubric-judge agree` computes (store/agreement.py), so SQL can
-- reach them: one row per statistic, the latest computation for each run and grouping (a new
-- `agree` of the same runs and `by` replaces their rows). Computed in numpy, so a table rather
-- than a macro; the bootstrap draws are stats.sql's `_bootstrap_pick`.
CREATE TABLE IF NOT EXISTS agreement_results (
    run_id        VARCHAR NOT NULL,     -- the judged run the row is about
    compared      VARCHAR NOT NULL,     -- e.g. "judge vs rater r1", "raters (leave-one-out)", "run A vs run B"
    rater         VARCHAR,              -- the rater of a per-rater row
    other_run_id  VARCHAR,              -- the other run (judge vs judge, probe)
    with_judge    BOOLEAN,              -- whether the judge is one of the coders compared
    statistic     VARCHAR NOT NULL,     -- balanced_f1 | cohen_kappa | krippendorff_alpha | flip_rate | base_rate
    level         VARCHAR,              -- alpha's level of measurement: nominal | ordinal | interval
    "by"          VARCHAR NOT NULL,     -- overall | dimension | criterion | category
    "group"       VARCHAR NOT NULL,     -- the group's name ('overall' for by = overall)
    value         DOUBLE,               -- NULL when undefined (e.g. a class never used)
    ci_low        DOUBLE,
    ci_high       DOUBLE,
    n             BIGINT NOT NULL,      -- items (or item pairs, or units) compared
    samples       BIGINT NOT NULL,      -- samples resampled
    resamples     BIGINT NOT NULL,
    seed          BIGINT NOT NULL,
    ci_level      DOUBLE NOT NULL,
    computed_at   TIMESTAMP NOT NULL
);
