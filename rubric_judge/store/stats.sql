-- Statistics over the scoring views: seeded percentile-bootstrap confidence intervals.
-- Executed after views.sql on every read-write connection (CREATE OR REPLACE, so a database
-- written by an older version gets these the next time it is opened read-write); the objects
-- are stored in the file, so read-only connections and any DuckDB client can use them.
--
--   SELECT * FROM leaderboard_ci;                                  -- 1000 resamples, seed 0, 95 %
--   SELECT * FROM leaderboard_bootstrap(resamples := 5000, seed := 7, level := 0.9);
--   SELECT * FROM paired_bootstrap('<run id a>', '<run id b>');    -- a - b per dimension
--
-- The unit of resampling is the sample (task): a sample judged several times (replicates) is one
-- cluster whose replicate scores are averaged first, because replicates of one task are not
-- independent draws from the task population and resampling them separately would make the
-- interval too narrow. With one replicate per sample, `score` equals the `leaderboard` view's.
--
-- Randomness is a counter-based generator, so it needs no state and no Python: draw j of
-- resample b in a group of n samples picks position mix(mix(mix(mix(seed) XOR b) XOR j)) % n,
-- where mix is DuckDB's hash() of one 64-bit integer (a bijective avalanche mixer). The inputs
-- of the last mixing are distinct 64-bit values for every (b, j), so the picks behave as
-- independent uniform draws; the final mix is doubled because those inputs differ only in
-- their low bits. hash() of several arguments is not used: how it combines them is an
-- implementation detail. The same seed gives the same intervals, bit for bit, on any machine
-- with the same DuckDB version (DuckDB has changed hash() between releases before). Groups of
-- the same size share their draws, so the overall and per-dimension rows of one resample
-- usually resample the same tasks.
-- Intervals are percentiles of the B resampled means (quantile_cont, numpy's default method).

-- One row per (run, dimension incl. 'overall', sample) that is scored and not excluded: the
-- mean over the sample's scored replicates; `passed` (pass_rate rubrics, overall only) is the
-- share of those replicates that passed. Means are taken in replicate order so that they are
-- the same bits on every execution (see _bootstrap_step).
-- A run or dimension where the judge gave no valid verdict (views.sql `_unjudged`) has no
-- scored sample, so neither a score nor an interval: as the leaderboard view.
CREATE OR REPLACE VIEW _sample_scores AS
SELECT run_id, 'overall' AS dimension, sample_id, avg(score ORDER BY replicate) AS score, avg(passed::INTEGER) AS passed
FROM task_scores
WHERE NOT excluded AND score IS NOT NULL
  AND run_id NOT IN (SELECT run_id FROM _unjudged WHERE dimension = 'overall')
GROUP BY run_id, sample_id
UNION ALL
SELECT d.run_id, d.dimension, d.sample_id, avg(d.score ORDER BY d.replicate) AS score, NULL AS passed
FROM dimension_scores d ANTI JOIN _unjudged u ON u.run_id = d.run_id AND u.dimension = d.dimension
WHERE NOT d.excluded AND d.score IS NOT NULL
GROUP BY d.run_id, d.dimension, d.sample_id;

-- Position (0-based) drawn by draw j of resample b in a group of n samples.
CREATE OR REPLACE MACRO _bootstrap_pick(seed, b, j, n) AS
    (hash(hash(xor(hash(xor(hash(seed::BIGINT), b::UBIGINT)), j::UBIGINT))) % n::UBIGINT)::BIGINT;

-- A value in [lo, hi] as an integer step of 2^-52 of the range, and back. Means (the point
-- estimate and every resample's) are sums over these integers: a floating-point sum in a
-- parallel aggregate depends on the order in which threads combine their parts (the
-- `leaderboard` view's avg() can differ in the last bit between two executions), and the
-- numbers must be bit-for-bit reproducible for a seed. The error (2^-53 of the range) is far
-- below any bootstrap error; when all values are equal every step is 0 and the mean and the
-- interval are exactly that value.
CREATE OR REPLACE MACRO _bootstrap_step(x, lo, hi) AS
    CASE WHEN hi = lo THEN 0 ELSE round((x - lo) / (hi - lo) * 4503599627370496)::BIGINT END;
CREATE OR REPLACE MACRO _bootstrap_mean(steps, n, lo, hi) AS
    lo + steps::DOUBLE / n * (hi - lo) / 4503599627370496;

-- One row per leaderboard row with its interval. `samples` is the number of samples (clusters)
-- resampled; ci_low/ci_high are NULL when there is nothing to resample. For pass_rate rubrics
-- the overall row also has accuracy_rate with accuracy_ci_low/high from the same resamples
-- (NULL otherwise). `score` (and accuracy_rate) is the mean over samples of their replicate
-- means: the leaderboard view's number (to the last bit or so) whenever each sample has one
-- scored replicate; with unequal numbers of replicates the view weights samples by them.
-- Resampling joins the draws (n, b, position) with the samples numbered by sample_id within
-- their group, so results do not depend on insertion order; groups of the same size share
-- their draws. (A join and one integer aggregate is ~3x faster than gathering with lists.)
CREATE OR REPLACE MACRO leaderboard_bootstrap(resamples := 1000, seed := 0, level := 0.95) AS TABLE
WITH groups AS (
    SELECT run_id, dimension, count(*) AS n, min(score) AS lo, max(score) AS hi,
           row_number() OVER (ORDER BY run_id, dimension) AS gid
    FROM _sample_scores
    GROUP BY run_id, dimension
), units AS (
    SELECT g.gid, g.n, _bootstrap_step(s.score, g.lo, g.hi) AS step, _bootstrap_step(s.passed, 0, 1) AS passed_step,
           row_number() OVER (PARTITION BY g.gid ORDER BY s.sample_id) - 1 AS pos
    FROM _sample_scores s JOIN groups g ON g.run_id = s.run_id AND g.dimension = s.dimension
), draws AS (
    SELECT sizes.n, r.b, _bootstrap_pick(seed, r.b, j.j, sizes.n) AS pos
    FROM (SELECT DISTINCT n FROM groups) sizes, range(resamples::BIGINT) r(b), range(sizes.n) j(j)
), totals AS (
    SELECT gid, sum(step) AS steps, sum(passed_step) AS passed_steps
    FROM units
    GROUP BY gid
), resampled AS (
    SELECT u.gid, d.b, sum(u.step) AS steps, sum(u.passed_step) AS passed_steps
    FROM draws d JOIN units u ON u.n = d.n AND u.pos = d.pos
    GROUP BY u.gid, d.b
), intervals AS (
    SELECT g.gid,
           quantile_cont(_bootstrap_mean(r.steps, g.n, g.lo, g.hi), [(1 - level) / 2, (1 + level) / 2]) AS ci,
           quantile_cont(_bootstrap_mean(r.passed_steps, g.n, 0, 1), [(1 - level) / 2, (1 + level) / 2]) AS accuracy_ci
    FROM resampled r JOIN groups g USING (gid)
    GROUP BY g.gid
)
SELECT l.run_id, l.rubric_id, l.rubric_version, l.model_name, l.judge_model, l.dimension,
       _bootstrap_mean(t.steps, g.n, g.lo, g.hi) AS score,
       i.ci[1] AS ci_low, i.ci[2] AS ci_high,
       CASE WHEN l.accuracy_rate IS NOT NULL THEN _bootstrap_mean(t.passed_steps, g.n, 0, 1) END AS accuracy_rate,
       CASE WHEN l.accuracy_rate IS NOT NULL THEN i.accuracy_ci[1] END AS accuracy_ci_low,
       CASE WHEN l.accuracy_rate IS NOT NULL THEN i.accuracy_ci[2] END AS accuracy_ci_high,
       coalesce(g.n, 0) AS samples, resamples::BIGINT AS resamples, seed::BIGINT AS seed, level::DOUBLE AS level
FROM leaderboard l
LEFT JOIN groups g ON g.run_id = l.run_id AND g.dimension = l.dimension
LEFT JOIN totals t ON t.gid = g.gid
LEFT JOIN intervals i ON i.gid = g.gid;

CREATE OR REPLACE VIEW leaderboard_ci AS
SELECT * FROM leaderboard_bootstrap();

-- Run a against run b (run ids), per dimension incl. 'overall': over the samples scored in both
-- runs, the means and the mean difference a - b with a percentile-bootstrap interval from
-- resampling the paired differences (pairing removes the between-task variance both runs share,
-- so this interval is narrower than comparing two leaderboard intervals). Samples scored in only
-- one run (absent, excluded or unscored in the other) are counted in only_in_a / only_in_b.
CREATE OR REPLACE MACRO paired_bootstrap(run_a, run_b, resamples := 1000, seed := 0, level := 0.95) AS TABLE
WITH pairs AS (
    SELECT dimension, sample_id, a.score AS score_a, b.score AS score_b, a.score - b.score AS difference
    FROM (SELECT dimension, sample_id, score FROM _sample_scores WHERE run_id = run_a) a
    FULL JOIN (SELECT dimension, sample_id, score FROM _sample_scores WHERE run_id = run_b) b USING (dimension, sample_id)
), groups AS (
    SELECT dimension,
           count(difference) AS n,
           avg(score_a ORDER BY sample_id) FILTER (WHERE difference IS NOT NULL) AS mean_a,
           avg(score_b ORDER BY sample_id) FILTER (WHERE difference IS NOT NULL) AS mean_b,
           min(difference) AS lo, max(difference) AS hi,
           count(*) FILTER (WHERE score_b IS NULL) AS only_in_a,
           count(*) FILTER (WHERE score_a IS NULL) AS only_in_b,
           row_number() OVER (ORDER BY dimension) AS gid
    FROM pairs
    GROUP BY dimension
), units AS (
    SELECT g.gid, g.n, _bootstrap_step(p.difference, g.lo, g.hi) AS step,
           row_number() OVER (PARTITION BY g.gid ORDER BY p.sample_id) - 1 AS pos
    FROM pairs p JOIN groups g USING (dimension)
    WHERE p.difference IS NOT NULL
), draws AS (
    SELECT sizes.n, r.b, _bootstrap_pick(seed, r.b, j.j, sizes.n) AS pos
    FROM (SELECT DISTINCT n FROM groups WHERE n > 0) sizes, range(resamples::BIGINT) r(b), range(sizes.n) j(j)
), totals AS (
    SELECT gid, sum(step) AS steps FROM units GROUP BY gid
), intervals AS (
    SELECT g.gid, quantile_cont(_bootstrap_mean(r.steps, g.n, g.lo, g.hi), [(1 - level) / 2, (1 + level) / 2]) AS ci
    FROM (SELECT u.gid, d.b, sum(u.step) AS steps
          FROM draws d JOIN units u ON u.n = d.n AND u.pos = d.pos
          GROUP BY u.gid, d.b) r
    JOIN groups g USING (gid)
    GROUP BY g.gid
)
SELECT g.dimension, g.n AS samples_paired, g.mean_a, g.mean_b, _bootstrap_mean(t.steps, g.n, g.lo, g.hi) AS difference,
       i.ci[1] AS ci_low, i.ci[2] AS ci_high, g.only_in_a, g.only_in_b,
       resamples::BIGINT AS resamples, seed::BIGINT AS seed, level::DOUBLE AS level
FROM groups g LEFT JOIN totals t USING (gid) LEFT JOIN intervals i USING (gid)
ORDER BY g.dimension <> 'overall', g.dimension;

-- Run a against run b per criterion: what a rubric edit changed, for `rubric-judge compare
-- --by criterion` (two versions of a rubric on the same model). Per criterion id:
--   change: how its definition differs between the runs, from the `criteria` table (per sample,
--     then pooled): '' (same), 'added' (only in b), 'removed' (only in a), or any of 'text',
--     'weight', 'dimension' joined with '+';
--   mean_a / mean_b: over the samples with a valid verdict in both runs, the share met (binary)
--     or the mean score (scale), a sample's replicates averaged first; difference = a - b;
--   verdicts_changed: paired samples whose verdict differs; only_in_a / only_in_b: samples with
--     a valid verdict in one run only;
--   text_a / text_b: the criterion's text in each run where it was edited (one example sample).
CREATE OR REPLACE MACRO criterion_changes(run_a, run_b) AS TABLE
WITH va AS (
    SELECT sample_id, criterion_id, any_value(dimension) AS dimension,
           avg(CASE WHEN met IS NOT NULL THEN met::INTEGER ELSE score END ORDER BY replicate) AS value
    FROM verdicts WHERE run_id = run_a AND status = 'ok' GROUP BY sample_id, criterion_id
), vb AS (
    SELECT sample_id, criterion_id, any_value(dimension) AS dimension,
           avg(CASE WHEN met IS NOT NULL THEN met::INTEGER ELSE score END ORDER BY replicate) AS value
    FROM verdicts WHERE run_id = run_b AND status = 'ok' GROUP BY sample_id, criterion_id
), verdict_pairs AS (
    SELECT criterion_id, coalesce(b.dimension, a.dimension) AS dimension,
           count(*) FILTER (WHERE a.value IS NOT NULL AND b.value IS NOT NULL) AS samples_paired,
           avg(a.value ORDER BY sample_id) FILTER (WHERE b.value IS NOT NULL) AS mean_a,
           avg(b.value ORDER BY sample_id) FILTER (WHERE a.value IS NOT NULL) AS mean_b,
           count(*) FILTER (WHERE a.value <> b.value) AS verdicts_changed,
           count(*) FILTER (WHERE b.value IS NULL) AS only_in_a,
           count(*) FILTER (WHERE a.value IS NULL) AS only_in_b
    FROM va a FULL JOIN vb b USING (sample_id, criterion_id)
    GROUP BY criterion_id, coalesce(b.dimension, a.dimension)
), definitions AS (
    SELECT criterion_id, coalesce(b.dimension, a.dimension) AS dimension, sample_id,
           a.criterion_id IS NULL AS added, b.criterion_id IS NULL AS removed,
           a.text <> b.text AS text_changed, a.weight <> b.weight AS weight_changed, a.dimension <> b.dimension AS dimension_changed,
           a.text AS text_a, b.text AS text_b
    FROM (SELECT * FROM criteria WHERE run_id = run_a) a
    FULL JOIN (SELECT * FROM criteria WHERE run_id = run_b) b USING (sample_id, criterion_id)
), changes AS (
    SELECT criterion_id, any_value(dimension) AS dimension,
           CASE WHEN bool_and(added) THEN 'added' WHEN bool_and(removed) THEN 'removed'
                ELSE concat_ws('+', CASE WHEN bool_or(text_changed) THEN 'text' END, CASE WHEN bool_or(weight_changed) THEN 'weight' END,
                               CASE WHEN bool_or(dimension_changed) THEN 'dimension' END,
                               CASE WHEN bool_or(added) THEN 'added on some samples' END,
                               CASE WHEN bool_or(removed) THEN 'removed on some samples' END) END AS change,
           arg_min(text_a, sample_id) FILTER (WHERE text_changed) AS text_a,
           arg_min(text_b, sample_id) FILTER (WHERE text_changed) AS text_b
    FROM definitions
    GROUP BY criterion_id
)
SELECT criterion_id, coalesce(c.dimension, p.dimension) AS dimension, coalesce(c.change, '') AS change,
       coalesce(p.samples_paired, 0) AS samples_paired, p.mean_a, p.mean_b, p.mean_a - p.mean_b AS difference,
       coalesce(p.verdicts_changed, 0) AS verdicts_changed, coalesce(p.only_in_a, 0) AS only_in_a, coalesce(p.only_in_b, 0) AS only_in_b,
       c.text_a, c.text_b
FROM changes c FULL JOIN verdict_pairs p USING (criterion_id)
ORDER BY coalesce(c.change, '') = '', coalesce(c.dimension, p.dimension), criterion_id;
