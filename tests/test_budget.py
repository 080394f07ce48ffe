"""--max-cost stops a run cleanly once actual spend reaches the budget: no new paid call starts,
calls not made are reported as skipped (stored as error verdicts), and nothing is cached for them."""

from __future__ import annotations

from pathlib import Path

from rubric_judge.cache.verdicts import CacheMode, VerdictCache
from rubric_judge.judge.executor import Executor, ExecutorSettings, Progress
from rubric_judge.planning.compile import JudgeTarget, build_plan
from rubric_judge.planning.job import load_job
from rubric_judge.testing.loopback import LoopbackJudge

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"


def test_spend_reaching_the_budget_stops_new_calls(tmp_path: Path):
    job = load_job(EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model")
    calls = build_plan(job.rubrics, job.samples, JudgeTarget("openai/gpt-4.1")).calls  # a priced model
    with LoopbackJudge() as server, VerdictCache(tmp_path / "cache", CacheMode.read_write) as cache:
        # Any positive spend exceeds this budget: the first call is paid for, then nothing more starts.
        settings = ExecutorSettings(concurrency=1, api_base=server.base_url, api_key="sk-test", max_cost_usd=1e-9)
        progress = Progress()
        outcomes = Executor(cache, settings).run(calls, progress)
        assert server.request_count == 1
        assert all(cache.get(o.call.cache_key) is None for o in outcomes if o.status == "skipped")
    statuses = [o.status for o in outcomes]
    assert statuses.count("ok") == 1 and statuses.count("skipped") == len(calls) - 1
    assert progress.budget_reached and progress.cost_usd > 0
    skipped = next(o for o in outcomes if o.status == "skipped")
    assert "budget" in skipped.error
