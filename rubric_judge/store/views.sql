-- Scoring as SQL views, so every number in a report can be re-derived with a query.
--
-- weighted_points (IlluGenBench): S_k = sum(w_i * met_i) / sum(w_i > 0), per task, pooled over
--   dimensions and per dimension; a task with no positive weight is excluded; no clipping.
-- mean_scale: the weighted mean of the scale scores of a sample's criteria,
--   sum(w_i * score_i) / sum(w_i) (weights must be positive; all 1 by default: the plain mean).
-- pass_rate: a sample passes when its pass criterion's score (or its weighted mean score) >= threshold.
-- Per dimension: each dimension is scored by its own method (`criteria.scoring_method`: a rubric
--   may mix binary-checklist and scale dimensions); rows written before migration 7 use the run's.
-- Overall (task_scores, the leaderboard's `overall` row): the rubric-level method over the
--   criteria whose verdict kind is the rubric-level `verdict` (`criteria.in_overall`); a mixed
--   rubric's dimensions of the other kind are scored in dimension_scores only, since points in
--   [.., 1] and 1-10 scores have no common unit. For a rubric of one kind: every criterion.
-- Verdict statuses: `ok` verdicts count; `missing_output` verdicts count as unmet (score =
-- scale minimum) under the `fail` policy and exclude the sample under `skip`; `error` and
-- `unscored` verdicts are left out of both numerator and denominator and counted in
-- `unscored`, so a judge failure never silently reads as "not met" -- unless the rubric asks
-- for the official scripts' behaviour (`unscored: fail`, reference-compatible), where they
-- count as unmet and are still counted in `unscored`.

CREATE OR REPLACE VIEW _verdicts_scored AS
WITH joined AS (
    SELECT v.*, r.scoring_method, r.missing_output AS policy, r.threshold, r.pass_criterion, r.unscored_policy,
           coalesce(c.scoring_method, CASE WHEN r.scoring_method = 'weighted_points' THEN 'weighted_points' ELSE 'mean_scale' END)
               AS dimension_method,
           coalesce(c.in_overall, true) AS in_overall,
           CASE WHEN c.verdict_kind IS NULL THEN r.scale_min WHEN c.verdict_kind = 'scale' THEN c.scale_min END AS scale_min
    FROM verdicts v JOIN runs r USING (run_id)
    LEFT JOIN criteria c ON c.run_id = v.run_id AND c.sample_id = v.sample_id AND c.criterion_id = v.criterion_id
)
SELECT * EXCLUDE (unscored_policy),
       status IN ('ok', 'missing_output') OR (status IN ('error', 'unscored') AND unscored_policy = 'fail') AS counted,
       CASE WHEN status = 'ok' THEN score WHEN status = 'missing_output' THEN scale_min
            WHEN status IN ('error', 'unscored') AND unscored_policy = 'fail' THEN scale_min END AS scale_value
FROM joined;

-- The weighted mean of the scale values in a group (NULL when none): sum(w * x) / sum(w).
CREATE OR REPLACE MACRO _weighted_mean(weighted_sum, weights) AS weighted_sum / nullif(weights, 0);

CREATE OR REPLACE VIEW task_scores AS
WITH per_sample AS (
    SELECT run_id, sample_id, replicate,
           any_value(scoring_method) AS method,
           any_value(policy) AS policy,
           any_value(threshold) AS threshold,
           any_value(pass_criterion) AS pass_criterion,
           bool_or(status = 'missing_output') AS missing_output,
           count(*) FILTER (WHERE status IN ('error', 'unscored')) AS unscored,
           count(*) AS criteria,
           sum(CASE WHEN status = 'ok' AND met THEN weight ELSE 0 END) FILTER (WHERE counted AND in_overall) AS points,
           sum(weight) FILTER (WHERE counted AND weight > 0 AND in_overall) AS positive_points,
           _weighted_mean(sum(weight * scale_value) FILTER (WHERE in_overall),
                          sum(weight) FILTER (WHERE in_overall AND scale_value IS NOT NULL)) AS mean_score,
           avg(scale_value) FILTER (WHERE criterion_id = pass_criterion) AS criterion_score
    FROM _verdicts_scored
    GROUP BY run_id, sample_id, replicate
), scored AS (
    SELECT *,
           CASE method
               WHEN 'weighted_points' THEN points / nullif(positive_points, 0)
               WHEN 'mean_scale' THEN mean_score
               ELSE CASE WHEN pass_criterion IS NULL THEN mean_score ELSE criterion_score END
           END AS score
    FROM per_sample
)
SELECT run_id, sample_id, replicate, method, score,
       CASE WHEN method = 'pass_rate' AND score IS NOT NULL THEN score >= threshold END AS passed,
       missing_output, unscored, criteria, points, positive_points,
       (policy = 'skip' AND missing_output)
           OR (method = 'weighted_points' AND positive_points IS NULL AND NOT missing_output) AS excluded
FROM scored;

CREATE OR REPLACE VIEW dimension_scores AS
WITH per_dimension AS (
    SELECT run_id, sample_id, replicate, dimension,
           any_value(dimension_method) AS method,
           any_value(policy) AS policy,
           bool_or(status = 'missing_output') AS missing_output,
           count(*) FILTER (WHERE status IN ('error', 'unscored')) AS unscored,
           sum(CASE WHEN status = 'ok' AND met THEN weight ELSE 0 END) FILTER (WHERE counted) AS points,
           sum(weight) FILTER (WHERE counted AND weight > 0) AS positive_points,
           _weighted_mean(sum(weight * scale_value), sum(weight) FILTER (WHERE scale_value IS NOT NULL)) AS mean_score
    FROM _verdicts_scored
    GROUP BY run_id, sample_id, replicate, dimension
)
SELECT run_id, sample_id, replicate, dimension, method,
       CASE WHEN method = 'weighted_points' THEN points / nullif(positive_points, 0) ELSE mean_score END AS score,
       missing_output, unscored,
       (policy = 'skip' AND missing_output)
           OR (method = 'weighted_points' AND positive_points IS NULL AND NOT missing_output) AS excluded
FROM per_dimension;

-- "No number from nothing": a run (overall) or a dimension in which the judge never gave a valid
-- verdict -- every verdict it was asked for is `unscored` or `error` -- and whose policy leaves
-- those out (`unscored: exclude`) has no judge score. Without this, its score would be computed
-- from the missing outputs alone (0 under `missing_output: fail`), a number from nothing.
-- `failed` is how many verdicts the judge failed to give there.
CREATE OR REPLACE MACRO _unjudged_note(failed) AS
    CASE WHEN failed IS NOT NULL THEN 'no judge score: the judge gave no valid verdict (' || failed::VARCHAR
         || ' unscored or failed); the missing outputs alone are not a score' END;

CREATE OR REPLACE VIEW _unjudged AS
WITH per AS (
    SELECT v.run_id, 'overall' AS dimension, v.status, r.unscored_policy FROM verdicts v JOIN runs r USING (run_id)
    UNION ALL
    SELECT v.run_id, v.dimension, v.status, r.unscored_policy FROM verdicts v JOIN runs r USING (run_id)
)
SELECT run_id, dimension, count(*) FILTER (WHERE status IN ('error', 'unscored')) AS failed
FROM per
GROUP BY run_id, dimension
HAVING count(*) FILTER (WHERE status = 'ok') = 0
   AND count(*) FILTER (WHERE status IN ('error', 'unscored')) > 0
   AND any_value(unscored_policy) = 'exclude';

-- `status` is the run's (running | finished | partial | stopped | interrupted | failed): anything but
-- finished means the scores cover only part of the work. `samples_total` is the number of
-- samples in the run's manifest, so samples_scored / samples_total is its coverage.
-- `score` (and accuracy_rate) is NULL, samples_scored 0, and `score_note` says why where the
-- judge gave no valid verdict at all (_unjudged); score_note is NULL otherwise.
-- A judge panel is one row (its combined verdicts, judge_model `panel:<rule>(<judges>)`); its
-- members' runs and bias-probe runs are left out (same model and judge as other rows; read
-- them in task_scores or with `rubric-judge agree`). Superseded runs (an earlier rubric version,
-- runs.superseded_by) are left out too: `rubric-judge runs --all` lists them, task_scores has them.
CREATE OR REPLACE VIEW leaderboard AS
-- A partial run (score --limit/--sample) counts its manifest's samples, not only those it scored.
WITH totals AS (SELECT run_id, coalesce(any_value(r.manifest_samples), count(s.sample_id)) AS samples_total FROM runs r LEFT JOIN samples s USING (run_id) GROUP BY run_id)
SELECT r.run_id, r.rubric_id, r.rubric_version, r.model_name, r.judge_model, 'overall' AS dimension,
       CASE WHEN any_value(u.failed) IS NULL THEN avg(t.score) FILTER (WHERE NOT t.excluded) END AS score,
       CASE WHEN any_value(t.method) = 'pass_rate' AND any_value(u.failed) IS NULL
            THEN avg(t.passed::INTEGER) FILTER (WHERE NOT t.excluded AND t.passed IS NOT NULL) END AS accuracy_rate,
       CASE WHEN any_value(u.failed) IS NULL THEN count(*) FILTER (WHERE NOT t.excluded AND t.score IS NOT NULL) ELSE 0 END AS samples_scored,
       count(*) FILTER (WHERE t.excluded) AS samples_excluded,
       count(*) FILTER (WHERE t.missing_output) AS missing_outputs,
       coalesce(sum(t.unscored), 0) AS unscored_verdicts,
       r.status, coalesce(any_value(n.samples_total), 0) AS samples_total,
       coalesce(_unjudged_note(any_value(u.failed)),
                CASE WHEN count(t.run_id) = 0 THEN 'no sample was scored before the run ended' END) AS score_note
-- A run that ended before any sample was scored still has its row: no score, its status and 0 of N.
FROM runs r LEFT JOIN task_scores t USING (run_id) LEFT JOIN totals n USING (run_id)
LEFT JOIN _unjudged u ON u.run_id = r.run_id AND u.dimension = 'overall'
WHERE coalesce(r.role, 'run') IN ('run', 'panel') AND r.superseded_by IS NULL AND (t.run_id IS NOT NULL OR r.status <> 'finished')
GROUP BY ALL
UNION ALL
SELECT r.run_id, r.rubric_id, r.rubric_version, r.model_name, r.judge_model, d.dimension,
       CASE WHEN any_value(u.failed) IS NULL THEN avg(d.score) FILTER (WHERE NOT d.excluded) END AS score,
       NULL AS accuracy_rate,
       CASE WHEN any_value(u.failed) IS NULL THEN count(*) FILTER (WHERE NOT d.excluded AND d.score IS NOT NULL) ELSE 0 END AS samples_scored,
       count(*) FILTER (WHERE d.excluded) AS samples_excluded,
       count(*) FILTER (WHERE d.missing_output) AS missing_outputs,
       coalesce(sum(d.unscored), 0) AS unscored_verdicts,
       r.status, coalesce(any_value(n.samples_total), 0) AS samples_total,
       _unjudged_note(any_value(u.failed)) AS score_note
FROM runs r JOIN dimension_scores d USING (run_id) LEFT JOIN totals n USING (run_id)
LEFT JOIN _unjudged u ON u.run_id = r.run_id AND u.dimension = d.dimension
WHERE coalesce(r.role, 'run') IN ('run', 'panel') AND r.superseded_by IS NULL
GROUP BY ALL;

-- Metric values: `ok` values count; a `missing_output` counts as failed under the `fail`
-- policy and is left out under `skip`; `error` and `unavailable` values are left out and
-- counted in `not_computed`.
CREATE OR REPLACE VIEW metric_summary AS
SELECT m.run_id, r.model_name, m.metric,
       avg(m.value) FILTER (WHERE m.status = 'ok') AS mean_value,
       avg(CASE WHEN m.status = 'ok' THEN m.passed::INTEGER
                WHEN m.status = 'missing_output' AND r.missing_output = 'fail' THEN 0 END) AS accuracy_rate,
       count(*) FILTER (WHERE m.status = 'ok') AS samples_ok,
       count(*) FILTER (WHERE (m.status = 'ok' AND m.passed IS NOT NULL)
                           OR (m.status = 'missing_output' AND r.missing_output = 'fail')) AS samples_rated,
       count(*) FILTER (WHERE m.status = 'missing_output') AS missing_outputs,
       count(*) FILTER (WHERE m.status IN ('error', 'unavailable')) AS not_computed,
       any_value(m.detail) FILTER (WHERE m.status IN ('error', 'unavailable')) AS example_problem
FROM metric_values m JOIN runs r USING (run_id)
GROUP BY m.run_id, r.model_name, m.metric;

CREATE OR REPLACE VIEW accuracy_rates AS
SELECT run_id, 'judge' AS source, 'overall' AS name, accuracy_rate AS rate, samples_scored AS samples
FROM leaderboard
WHERE dimension = 'overall' AND accuracy_rate IS NOT NULL
UNION ALL
SELECT run_id, 'metric' AS source, metric AS name, accuracy_rate AS rate, samples_rated AS samples
FROM metric_summary
WHERE accuracy_rate IS NOT NULL;

-- Analysis ------------------------------------------------------------------------------------

-- Every verdict with what an analyst joins it to: the criterion's text, weight, dimension and
-- tags, the run's model, rubric and judge, and a sign-aware `failed`: a positive criterion
-- failed when it is not met, a negative one (a pitfall, weight < 0) when it is met. `failed`
-- is NULL where there is no binary verdict (scale verdicts, error, unscored, missing_output:
-- `status` says which). verdicts_full_all has every run; verdicts_full the current ones
-- (superseded runs left out, as in the leaderboard); `role` tells plain runs from a panel's
-- members and probes.
CREATE OR REPLACE VIEW verdicts_full_all AS
SELECT v.run_id, r.model_name, r.rubric_id, r.rubric_version, r.rubric_digest, r.judge_model,
       coalesce(r.role, 'run') AS role, r.status AS run_status, r.superseded_by,
       v.sample_id, s.category, v.criterion_id, v.replicate, v.dimension, c.dimension_name,
       c.text AS criterion_text, v.weight, c.tags,
       v.status, v.met, v.score, v.confidence,
       CASE WHEN v.status = 'ok' AND v.met IS NOT NULL THEN CASE WHEN v.weight < 0 THEN v.met ELSE NOT v.met END END AS failed,
       v.reasoning, v.call_id
FROM verdicts v
JOIN runs r USING (run_id)
LEFT JOIN criteria c ON c.run_id = v.run_id AND c.sample_id = v.sample_id AND c.criterion_id = v.criterion_id
LEFT JOIN samples s ON s.run_id = v.run_id AND s.sample_id = v.sample_id;

CREATE OR REPLACE VIEW verdicts_full AS
SELECT * FROM verdicts_full_all WHERE superseded_by IS NULL;

-- One row per run, for `rubric-judge runs`: its status, whether a later run superseded it, the
-- rubric content judged (rubric_digest), coverage (samples scored of samples_total, as the
-- leaderboard counts them) and what its judge calls paid (cache hits cost nothing; a panel
-- adds its members' calls). paid_usd is NULL when a paid call had no known price.
CREATE OR REPLACE VIEW run_summary AS
WITH totals AS (SELECT run_id, coalesce(any_value(r.manifest_samples), count(s.sample_id)) AS samples_total FROM runs r LEFT JOIN samples s USING (run_id) GROUP BY run_id),
scored AS (
    SELECT run_id, count(DISTINCT sample_id) FILTER (WHERE NOT excluded AND score IS NOT NULL) AS samples_scored
    FROM task_scores
    WHERE run_id NOT IN (SELECT run_id FROM _unjudged WHERE dimension = 'overall')
    GROUP BY run_id
),
own_calls AS (
    SELECT run_id, count(*) AS calls, count(*) FILTER (WHERE cache_hit) AS cached_calls,
           sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
           sum(cost_usd) AS paid_usd, bool_or(cost_usd IS NULL AND attempts > 0) AS cost_unknown
    FROM judge_calls GROUP BY run_id
),
calls AS (  -- a panel's calls are its members'
    SELECT coalesce(CASE WHEN m.role = 'panel_member' THEN m.parent_run_id END, c.run_id) AS run_id,
           sum(c.calls) AS calls, sum(c.cached_calls) AS cached_calls, sum(c.prompt_tokens) AS prompt_tokens,
           sum(c.completion_tokens) AS completion_tokens, sum(c.paid_usd) AS paid_usd, bool_or(c.cost_unknown) AS cost_unknown
    FROM own_calls c JOIN runs m USING (run_id)
    GROUP BY ALL
    UNION ALL
    SELECT run_id, calls, cached_calls, prompt_tokens, completion_tokens, paid_usd, cost_unknown
    FROM own_calls JOIN runs USING (run_id) WHERE role = 'panel_member'
),
spent AS (
    SELECT run_id, sum(calls) AS calls, sum(cached_calls) AS cached_calls, sum(prompt_tokens) AS prompt_tokens,
           sum(completion_tokens) AS completion_tokens,
           CASE WHEN NOT bool_or(cost_unknown) THEN coalesce(sum(paid_usd), 0) END AS paid_usd
    FROM calls GROUP BY run_id
)
SELECT r.run_id, r.status, r.superseded_by, r.superseded_by IS NULL AS current,
       r.rubric_id, r.rubric_version, r.rubric_digest, r.model_name, r.judge_model, coalesce(r.role, 'run') AS role, r.parent_run_id,
       coalesce(sc.samples_scored, 0) AS samples_scored, coalesce(t.samples_total, 0) AS samples_total,
       coalesce(p.calls, 0) AS calls, coalesce(p.cached_calls, 0) AS cached_calls,
       coalesce(p.prompt_tokens, 0) AS prompt_tokens, coalesce(p.completion_tokens, 0) AS completion_tokens,
       CASE WHEN p.run_id IS NULL THEN 0.0 ELSE p.paid_usd END AS paid_usd,
       r.started_at, r.finished_at, r.superseded_at, r.status_detail
FROM runs r
LEFT JOIN totals t USING (run_id)
LEFT JOIN scored sc USING (run_id)
LEFT JOIN spent p USING (run_id);
