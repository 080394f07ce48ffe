-- Migration 7: run history and what was paid.
--
-- A re-run whose rubric content changed keeps the earlier run instead of overwriting it
-- (store/db.py `begin_run`): the earlier run's rows move to an archive id and the run is marked
-- superseded; the run id itself (rubric, version, model, judge, api base) always names the
-- latest run. Runs written before this migration have no digest: a re-run replaces them, as
-- it always did.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS rubric_digest VARCHAR;    -- sha256 of the rubric content judged (every task rubric)
ALTER TABLE runs ADD COLUMN IF NOT EXISTS superseded_by VARCHAR;    -- NULL: current; else the run id that now holds this run's place
ALTER TABLE runs ADD COLUMN IF NOT EXISTS superseded_at TIMESTAMP;  -- when the re-run that superseded it started

-- A cache hit costs nothing: prompt_tokens, completion_tokens and cost_usd are what the call
-- paid (0 for a hit), so sum(cost_usd) is what was spent. The original_* columns keep what the
-- answer cost when it was first paid for (equal to the paid figures for a call that was paid).
ALTER TABLE judge_calls ADD COLUMN IF NOT EXISTS original_prompt_tokens BIGINT;
ALTER TABLE judge_calls ADD COLUMN IF NOT EXISTS original_completion_tokens BIGINT;
ALTER TABLE judge_calls ADD COLUMN IF NOT EXISTS original_cost_usd DOUBLE;
UPDATE judge_calls SET original_prompt_tokens = prompt_tokens, original_completion_tokens = completion_tokens, original_cost_usd = cost_usd
WHERE original_prompt_tokens IS NULL AND original_completion_tokens IS NULL AND original_cost_usd IS NULL;
UPDATE judge_calls SET prompt_tokens = 0, completion_tokens = 0, cost_usd = 0 WHERE cache_hit;

-- Criterion tags (HealthBench-style axes), read by the verdicts_full view. Also added by the
-- DSL's own migration: IF NOT EXISTS lets either come first.
ALTER TABLE criteria ADD COLUMN IF NOT EXISTS tags VARCHAR[];
