"""`score --batch` end to end: the loopback judge's files + batches endpoints over real HTTP, real
DuckDB files, the same verdicts as the live path, and every fault ending in explicit rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from rubric_judge.run import score, score_async
from rubric_judge.testing.batch_loopback import BatchFault, BatchLoopbackJudge
from tests.conftest import id_policy

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
TASKS, MANIFEST, GOOD = EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model"
# A model with batch prices in litellm's map, so the stored cost can be checked against them.
JUDGE = "openai/gpt-4o-mini"


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRIC_JUDGE_BATCH_POLL_S", "0.01")


@pytest.fixture
def batch_server() -> Iterator[BatchLoopbackJudge]:
    with BatchLoopbackJudge(policy=id_policy) as server:
        yield server


def options(server, tmp: Path, db: str = "batch.duckdb", cache: str = "cache", **extra) -> dict:
    return {"rubric": TASKS, "data": MANIFEST, "outputs": GOOD, "model": "good", "judge": JUDGE, "api_base": server.base_url,
            "db": tmp / db, "cache_dir": tmp / cache, "batch": True, **extra}


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def verdicts(db: Path) -> list[tuple]:
    return rows(db, "SELECT sample_id, criterion_id, replicate, met, score, status FROM verdicts ORDER BY ALL")


def calls(db: Path) -> list[tuple]:
    return rows(db, "SELECT call_id, status, error FROM judge_calls ORDER BY call_id")


def test_batch_run_equals_live_run_and_rerun_sends_nothing(batch_server, tmp_path: Path) -> None:
    live = score(**options(batch_server, tmp_path, db="live.duckdb", cache="live-cache", batch=False))
    assert live.exit_code == 0 and live.calls > 0
    live_bodies = sorted(json.dumps(body, sort_keys=True) for body in batch_server.requests)
    batch_server.clear_requests()

    result = score(**options(batch_server, tmp_path))
    assert (result.status, result.exit_code, result.failed_calls) == ("finished", 0, 0)
    assert batch_server.request_count == 0  # no live request: everything went through the batch
    [batch_id] = batch_server.created_batches
    assert verdicts(tmp_path / "batch.duckdb") == verdicts(tmp_path / "live.duckdb")
    # Each JSONL body is exactly what the live transport sent for the same call.
    assert sorted(json.dumps(line["body"], sort_keys=True) for line in batch_server.input_lines(batch_id)) == live_bodies
    # The run paid the batch price (litellm's input/output_cost_per_token_batches for this model).
    paid = rows(tmp_path / "batch.duckdb", "SELECT sum(prompt_tokens), sum(completion_tokens), sum(cost_usd) FROM judge_calls")[0]
    assert paid[2] == pytest.approx(paid[0] * 0.075e-6 + paid[1] * 0.3e-6)
    assert result.cost_usd == pytest.approx(live.cost_usd / 2)
    assert rows(tmp_path / "batch.duckdb", "SELECT status, collected_at IS NOT NULL FROM batches") == [("completed", True)]

    again = score(**options(batch_server, tmp_path))
    assert (again.status, again.cache_hits, again.calls) == ("finished", result.calls, result.calls)
    assert batch_server.created_batches == [batch_id] and batch_server.uploads == 1 and batch_server.request_count == 0


def test_provider_batch_size_splits_the_calls(batch_server, tmp_path: Path) -> None:
    result = score(**options(batch_server, tmp_path, provider_batch_size=5))
    assert result.exit_code == 0
    sizes = [len(batch_server.input_lines(b)) for b in batch_server.created_batches]
    assert max(sizes) == 5 and sum(sizes) == result.calls


def test_completed_batch_with_an_error_file_stores_each_failed_request(batch_server, tmp_path: Path) -> None:
    batch_server.fault_rule = lambda body, index: "http_500" if index % 3 == 0 else None
    result = score(**options(batch_server, tmp_path))
    planned = result.calls
    failed = [row for row in calls(tmp_path / "batch.duckdb") if row[1] != "ok"]
    assert result.failed_calls == len(failed) > 0 and result.exit_code == 1
    assert all(status == "error" and "HTTP 500: Internal server error (injected by the loopback judge)" in error for _, status, error in failed)
    assert len(calls(tmp_path / "batch.duckdb")) == planned  # nothing lost, nothing twice
    assert rows(tmp_path / "batch.duckdb", "SELECT count(*) FROM verdicts WHERE status = 'error'")[0][0] > 0

    batch_server.fault_rule = None  # the re-run submits only the failed requests, in a new batch
    again = score(**options(batch_server, tmp_path))
    assert again.exit_code == 0 and len(batch_server.created_batches) == 2
    assert len(batch_server.input_lines(batch_server.created_batches[1])) == len(failed)
    assert len(calls(tmp_path / "batch.duckdb")) == planned


@pytest.mark.parametrize("fault, expected", [
    (BatchFault.expire, "batch_expired: This request could not be executed before the completion window expired"),
    (BatchFault.partial_output, "ended completed without an answer to this request"),
    (BatchFault.fail, "ended failed without an answer to this request: invalid_request: the batch failed"),
])
def test_batch_faults_end_in_explicit_error_rows(batch_server, tmp_path: Path, fault: BatchFault, expected: str) -> None:
    batch_server.batch_faults.append(fault)
    result = score(**options(batch_server, tmp_path))
    stored = calls(tmp_path / "batch.duckdb")
    failed = [row for row in stored if row[1] != "ok"]
    assert len(stored) == result.calls and result.exit_code == 1 and failed
    assert all(status == "error" and expected in error for _, status, error in failed)
    if fault is BatchFault.partial_output:
        assert len(failed) == 1
    if fault is BatchFault.expire:
        assert len(failed) == result.calls - result.calls // 2


def test_failed_upload_stores_errors_and_records_no_batch(batch_server, tmp_path: Path) -> None:
    batch_server.upload_faults.append(500)
    result = score(**options(batch_server, tmp_path))
    stored = calls(tmp_path / "batch.duckdb")
    assert result.exit_code == 1 and len(stored) == result.calls == result.failed_calls
    assert all("the batch could not be submitted: HTTP 500" in error for _, _, error in stored)
    assert batch_server.created_batches == [] and rows(tmp_path / "batch.duckdb", "SELECT count(*) FROM batches")[0][0] == 0
    assert score(**options(batch_server, tmp_path)).exit_code == 0  # the re-run submits them


def stopped_while_polling(server, polls: int = 3, **arguments) -> None:
    """`score_async(**arguments)`, stopped (cancelled, as Ctrl-C stops it) once the batch server
    was polled `polls` times; it must still be running then."""

    async def stopped() -> None:
        task = asyncio.ensure_future(score_async(**arguments))
        while server.polls < polls:
            await asyncio.sleep(0.01)
            assert not task.done(), task.exception() if task.done() else None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stopped())


def test_killed_while_polling_resumes_without_a_second_submission(batch_server, tmp_path: Path) -> None:
    batch_server.polls_to_finish = 10**9  # never ends while the first command polls
    stopped_while_polling(batch_server, **options(batch_server, tmp_path))
    [batch_id] = batch_server.created_batches
    assert rows(tmp_path / "batch.duckdb", "SELECT batch_id, status FROM batches") == [(batch_id, "in_progress")]

    batch_server.polls_to_finish = 0
    result = score(**options(batch_server, tmp_path))
    assert (result.status, result.exit_code) == ("finished", 0)
    assert batch_server.created_batches == [batch_id] and batch_server.uploads == 1 and batch_server.request_count == 0


def test_no_wait_submits_then_the_same_command_collects(batch_server, tmp_path: Path) -> None:
    batch_server.polls_to_finish = 2
    first = score(**options(batch_server, tmp_path, batch_wait=False))
    assert (first.status, first.exit_code) == ("submitted", 0)
    assert "run the same command again" in first.status_detail
    stored = calls(tmp_path / "batch.duckdb")
    assert len(stored) == first.calls and all("waiting for batch" in error for _, _, error in stored)

    second = score(**options(batch_server, tmp_path, batch_wait=False))  # polls once more: still in progress
    assert second.status == "submitted"
    third = score(**options(batch_server, tmp_path, batch_wait=False))
    assert (third.status, third.exit_code, third.failed_calls) == ("finished", 0, 0)
    assert len(batch_server.created_batches) == 1 and batch_server.request_count == 0
    assert {status for _, status, _ in calls(tmp_path / "batch.duckdb")} == {"ok"}


def test_invalid_batch_answer_is_reasked_live(batch_server, tmp_path: Path) -> None:
    batch_server.faults.append("drop_criterion")  # the first batch line answers without one criterion
    result = score(**options(batch_server, tmp_path, batch_invalid="reask"))
    assert (result.exit_code, result.failed_calls) == (0, 0)
    assert batch_server.request_count == 1  # that one call, asked again live


def test_invalid_batch_answer_is_stored_unscored(batch_server, tmp_path: Path) -> None:
    batch_server.faults.append("drop_criterion")
    result = score(**options(batch_server, tmp_path, batch_invalid="unscored"))
    assert (result.exit_code, result.unscored_calls) == (1, 1) and batch_server.request_count == 0
    [(_, status, error)] = [row for row in calls(tmp_path / "batch.duckdb") if row[1] != "ok"]
    assert status == "unscored" and "invalid answer" in error


def test_batch_needs_an_openai_compatible_api_base(tmp_path: Path) -> None:
    from rubric_judge.errors import UserError

    with pytest.raises(UserError, match="--batch"):
        score(TASKS, data=MANIFEST, outputs=GOOD, model="good", judge="gemini/gemini-1.5-pro", db=tmp_path / "x.duckdb",
              cache_dir=tmp_path / "c", batch=True)


def test_plan_shows_the_batch_price_beside_the_live_price() -> None:
    from rubric_judge.plan_summary import plan
    from rubric_judge.planning.estimate import register_price

    published = plan(TASKS, data=MANIFEST, outputs=GOOD, judge=JUDGE, cache_dir=Path("/nonexistent-rubric-judge-cache"))
    mode = published.configured
    assert not published.batch_price_assumed  # gpt-4o-mini has batch prices in litellm's map
    assert mode.batch_to_pay_cost_usd == pytest.approx(mode.to_pay_cost_usd / 2)

    register_price("openai/test-live-price-only", 1e-6, 2e-6)  # no batch price: half, marked as assumed
    assumed = plan(TASKS, data=MANIFEST, outputs=GOOD, judge="openai/test-live-price-only", cache_dir=Path("/nonexistent-rubric-judge-cache"))
    assert assumed.batch_price_assumed
    assert assumed.configured.batch_to_pay_cost_usd == pytest.approx(assumed.configured.to_pay_cost_usd / 2)
