"""`score --batch` with an anthropic/ judge through the loopback's Message Batches API, per-request
limits, the orphan window between a batch's creation and its record, the progress display and
the batch price in the plan's estimate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rubric_judge.run import score
from rubric_judge.testing.batch_loopback import BatchFault, BatchLoopbackJudge
from tests.conftest import id_policy
from tests.test_batch import GOOD, MANIFEST, TASKS, _fast_polls, calls, rows, verdicts  # noqa: F401  (_fast_polls: an autouse fixture)

ANTHROPIC_JUDGE = "anthropic/claude-haiku-4-5"  # batch prices in litellm's map: half the live ones
OPENAI_JUDGE = "openai/gpt-4o-mini"
SECRET = "sk-ant-test-secret-key-0123456789"


@pytest.fixture
def server() -> Iterator[BatchLoopbackJudge]:
    with BatchLoopbackJudge(policy=id_policy) as judge:
        yield judge


def options(server, tmp: Path, judge: str = ANTHROPIC_JUDGE, db: str = "batch.duckdb", cache: str = "cache", **extra) -> dict:
    # Anthropic's base URL has no /v1: litellm (live) and the batch client add /v1/messages.
    base = server.base_url.removesuffix("/v1") if judge.startswith("anthropic/") else server.base_url
    return {"rubric": TASKS, "data": MANIFEST, "outputs": GOOD, "model": "good", "judge": judge, "api_base": base,
            "db": tmp / db, "cache_dir": tmp / cache, "batch": True, **extra}


def test_anthropic_batch_equals_the_openai_path_and_live_anthropic(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    openai = score(**options(server, tmp_path, judge=OPENAI_JUDGE, db="openai.duckdb", cache="openai-cache"))
    live = score(**options(server, tmp_path, db="live.duckdb", cache="live-cache", batch=False))
    assert openai.exit_code == live.exit_code == 0
    live_bodies = sorted(json.dumps(body, sort_keys=True) for body in server.requests)  # litellm's live Anthropic requests
    server.clear_requests()

    result = score(**options(server, tmp_path))
    assert (result.status, result.exit_code, result.failed_calls) == ("finished", 0, 0)
    assert server.request_count == 0
    [_openai_batch, batch_id] = server.created_batches
    assert batch_id.startswith("msgbatch") and verdicts(tmp_path / "batch.duckdb") == verdicts(tmp_path / "openai.duckdb")
    assert verdicts(tmp_path / "batch.duckdb") == verdicts(tmp_path / "live.duckdb")
    # Each batch request's params are exactly what litellm sends live for the same call.
    params = [request["params"] for request in server.input_lines(batch_id)]
    assert sorted(json.dumps(p, sort_keys=True) for p in params) == live_bodies
    first = params[0]
    assert first["tool_choice"]["type"] == "tool" and isinstance(first["system"], list)
    assert any(block["type"] == "image" and block["source"]["type"] == "base64" for block in first["messages"][0]["content"])
    assert result.cost_usd == pytest.approx(live.cost_usd / 2)
    headers = server.anthropic_headers
    assert headers and all(h.get("x-api-key") == SECRET and h.get("anthropic-version") == "2023-06-01" for h in headers)

    again = score(**options(server, tmp_path))
    assert (again.cache_hits, again.calls) == (result.calls, result.calls) and len(server.created_batches) == 2

    # The key is sent, never kept: not in the database, the cache or anything else written.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("fault, expected", [
    (BatchFault.expire, "expired: the request was expired before it was processed"),
    (BatchFault.fail, "api_error: the batch failed (injected by the loopback judge)"),
    (BatchFault.partial_output, "ended completed without an answer to this request"),
])
def test_anthropic_errored_and_expired_requests_are_stored_with_the_provider_error(server, tmp_path: Path, fault, expected) -> None:
    server.batch_faults.append(fault)
    result = score(**options(server, tmp_path))
    stored = calls(tmp_path / "batch.duckdb")
    failed = [row for row in stored if row[1] != "ok"]
    assert len(stored) == result.calls and result.exit_code == 1 and failed
    assert all(status == "error" and expected in error for _, status, error in failed)
    if fault is BatchFault.expire:
        assert len(failed) == result.calls - result.calls // 2
        assert rows(tmp_path / "batch.duckdb", "SELECT status FROM batches") == [("expired",)]


def test_anthropic_request_errors_in_a_batch(server, tmp_path: Path) -> None:
    server.fault_rule = lambda body, index: "http_500" if index % 3 == 0 else None
    result = score(**options(server, tmp_path))
    failed = [row for row in calls(tmp_path / "batch.duckdb") if row[1] != "ok"]
    assert result.failed_calls == len(failed) > 0
    assert all("server_error: Internal server error (injected by the loopback judge)" in error for _, _, error in failed)


def test_anthropic_invalid_answer_is_reasked_live(server, tmp_path: Path) -> None:
    server.faults.append("drop_criterion")
    result = score(**options(server, tmp_path, batch_invalid="reask"))
    assert (result.exit_code, result.failed_calls) == (0, 0) and server.request_count == 1


# -- per-request limits ---------------------------------------------------------------------


@pytest.mark.parametrize("judge", [OPENAI_JUDGE, ANTHROPIC_JUDGE])
@pytest.mark.parametrize("limit", ["images", "image_bytes", "request_bytes"])
def test_a_request_over_the_providers_limits_is_not_batched(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, judge: str, limit: str) -> None:
    from dataclasses import replace

    from rubric_judge.judge import batch, batch_anthropic

    # Limits tightened so that every IlluGenBench call (two images) is over them.
    tight = {"images": {"max_images_per_request": 1}, "image_bytes": {"max_image_bytes": 100},
             "request_bytes": {"max_request_bytes": 1000}}[limit]
    monkeypatch.setattr(batch, "OPENAI_LIMITS", replace(batch.OPENAI_LIMITS, **tight))
    monkeypatch.setattr(batch_anthropic, "ANTHROPIC_LIMITS", replace(batch_anthropic.ANTHROPIC_LIMITS, **tight))

    unscored = score(**options(server, tmp_path, judge=judge, batch_invalid="unscored"))
    stored = calls(tmp_path / "batch.duckdb")
    assert server.created_batches == [] and server.request_count == 0
    assert len(stored) == unscored.calls == unscored.unscored_calls and unscored.exit_code == 1
    assert all(status == "unscored" and error.startswith("not sent in a batch: ") for _, status, error in stored)

    live = score(**options(server, tmp_path, judge=judge, db="live.duckdb", batch_invalid="reask"))
    assert (live.exit_code, live.failed_calls) == (0, 0) and server.created_batches == [] and server.request_count == live.calls


# -- the orphan window ----------------------------------------------------------------------


@pytest.mark.parametrize("judge", [OPENAI_JUDGE, ANTHROPIC_JUDGE])
def test_killed_between_create_and_record_never_submits_twice(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, judge: str) -> None:
    from rubric_judge.store.batches import BatchLedgerDB

    real_save = BatchLedgerDB.save

    def killed_after_create(self, record):
        if record.client_token and not record.intended:  # the created batch's record: the process dies first
            raise KeyboardInterrupt
        real_save(self, record)

    monkeypatch.setattr(BatchLedgerDB, "save", killed_after_create)
    with pytest.raises(KeyboardInterrupt):
        score(**options(server, tmp_path, judge=judge))
    [created] = server.created_batches
    assert rows(tmp_path / "batch.duckdb", "SELECT status, client_token IS NOT NULL FROM batches") == [("submitting", True)]

    monkeypatch.setattr(BatchLedgerDB, "save", real_save)
    result = score(**options(server, tmp_path, judge=judge))
    assert (result.status, result.exit_code, result.failed_calls) == ("finished", 0, 0)
    assert server.created_batches == [created] and server.request_count == 0
    assert rows(tmp_path / "batch.duckdb", "SELECT batch_id, status FROM batches") == [(created, "completed")]


def test_an_intent_the_provider_never_created_is_submitted_again(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rubric_judge.judge.batch import BatchAPI

    async def killed_before_create(self, *args, **kwargs):
        raise KeyboardInterrupt

    real_create = BatchAPI.create
    monkeypatch.setattr(BatchAPI, "create", killed_before_create)
    with pytest.raises(KeyboardInterrupt):
        score(**options(server, tmp_path, judge=OPENAI_JUDGE))
    assert server.created_batches == [] and rows(tmp_path / "batch.duckdb", "SELECT status FROM batches") == [("submitting",)]

    monkeypatch.setattr(BatchAPI, "create", real_create)
    result = score(**options(server, tmp_path, judge=OPENAI_JUDGE))
    assert result.exit_code == 0 and len(server.created_batches) == 1
    assert rows(tmp_path / "batch.duckdb", "SELECT status FROM batches") == [("completed",)]


# -- progress and estimate ------------------------------------------------------------------


def test_score_batch_prints_states_and_the_batch_estimate_without_a_terminal(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from rubric_judge.cli.app import app

    server.polls_to_finish = 2
    args = ["score", str(TASKS), "--data", str(MANIFEST), "--outputs", str(GOOD), "--model", "good", "--judge", OPENAI_JUDGE,
            "--api-base", server.base_url, "--db", str(tmp_path / "cli.duckdb"), "--cache-dir", str(tmp_path / "cache")]
    plan = CliRunner().invoke(app, ["plan", *args[1:6], "--judge", OPENAI_JUDGE, "--cache-dir", str(tmp_path / "cache")])
    result = CliRunner().invoke(app, [*args, "--batch"])
    assert result.exit_code == 0, result.output
    out = result.output
    batch_id = server.created_batches[0]
    for state in ("submitted", "in_progress", "completed"):
        assert f"batch {batch_id}: {state}" in out, out
    assert "\x1b[" not in out  # no terminal: plain lines, no live bar
    estimate = next(line for line in out.splitlines() if "judge calls" in line and "estimated" in line)
    assert "batch price" in estimate, estimate
    assert plan.exit_code == 0
    amount = estimate.split("estimated $")[1].split()[0]
    assert f"{amount} USD with score --batch" in " ".join(plan.output.split()), (estimate, plan.output)
