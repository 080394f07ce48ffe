"""`score --batch` at IlluGenBench's size, and an Anthropic judge killed while it polls.

An IlluGenBench-sized job (296 task rubrics extending builtin:illugenbench/base.yaml, 9,015
criteria in three dimensions, two 16x16 PNGs per task: 888 per-dimension calls) is scored live
(direct transport) and through the loopback's OpenAI-compatible Files and Batch API: every
verdict row is the same, a re-run sends no HTTP request at all, and a `rubric-judge score --batch`
process killed (SIGKILL) while it polls resumes on the next run without a second submission.
The loopback answers with its default policy, a digest of each criterion's text (which names
its task), so an answer given to the wrong call would change verdicts.

With an anthropic/ judge (Message Batches API): a command stopped while it polls (cancelled in
process, as test_batch.py's OpenAI case) resumes without a second submission, and the `json_schema`
structured-output mode (litellm sends Anthropic's `output_format`, which needs the
structured-outputs beta header) giving the live path's verdicts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rubric_judge.run import score
from rubric_judge.testing.batch_loopback import BatchLoopbackJudge
from tests.conftest import ROOT, id_policy
from tests.test_batch import GOOD, MANIFEST, TASKS, calls, rows, stopped_while_polling, verdicts

CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]
JUDGE = "openai/gpt-4o-mini"
ANTHROPIC_JUDGE = "anthropic/claude-haiku-4-5"
DIMENSIONS = ("scientific_accuracy", "structural_correctness", "semantic_alignment")
TASK_COUNT, CRITERIA, CALLS = 296, 9015, 888  # IlluGenBench: 296 tasks, 9,015 criteria, one call per (task, dimension)
POLL_S = "0.01"


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRIC_JUDGE_BATCH_POLL_S", POLL_S)


def write_illugenbench_job(root: Path) -> dict[str, Path]:
    """An IlluGenBench-shaped job in `root`: tasks/<id>.yaml, manifest.jsonl, references/ and
    outputs/model/ (16x16 PNGs that differ per task).

    Returns:
        score's rubric, data and outputs paths.
    """
    from PIL import Image

    tasks, references, outputs = root / "tasks", root / "references", root / "outputs" / "model"
    for folder in (tasks, references, outputs):
        folder.mkdir(parents=True)
    lines = []
    for t in range(TASK_COUNT):
        task_id = f"task-{t:04d}"
        lines.append(json.dumps({"id": task_id, "category": "Anatomical", "prompt": f"A labelled medical illustration number {t}.",
                                 "reference_image": f"references/{task_id}.png"}))
        Image.new("RGB", (16, 16), (t % 256, t // 256, 60)).save(references / f"{task_id}.png")
        Image.new("RGB", (16, 16), (255 - t % 256, t // 256, 190)).save(outputs / f"{task_id}.png")
        count = CRITERIA // TASK_COUNT + (1 if t < CRITERIA % TASK_COUNT else 0)
        criteria = []
        for i in range(count):
            dimension = DIMENSIONS[i % 3]
            weight = (5, 3, 1, -3)[(t + i) % 4] if i >= 3 else 5  # signed; at least one positive weight per dimension
            criteria.append(f'  - {{id: {dimension}-{i // 3 + 1}, dimension: {dimension}, weight: {weight}, '
                            f'text: "Criterion {i} of {task_id}: structure {i} is drawn and labelled correctly."}}')
        (tasks / f"{task_id}.yaml").write_text(f"extends: builtin:illugenbench/base.yaml\ntask: {task_id}\ncriteria:\n" + "\n".join(criteria) + "\n",
                                               encoding="utf-8")
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"rubric": tasks, "data": root / "manifest.jsonl", "outputs": outputs}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_illugenbench_job(tmp_path_factory.mktemp("illugenbench-sized"))


@pytest.fixture(scope="module")
def live_db(job: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The job scored live (direct transport, concurrency 32) into a database of its own."""
    root = tmp_path_factory.mktemp("live")
    with BatchLoopbackJudge() as server:
        result = score(**job, model="model", judge=JUDGE, api_base=server.base_url, transport="direct", concurrency=32,
                       db=root / "live.duckdb", cache_dir=root / "cache")
        assert (result.exit_code, result.calls, result.failed_calls) == (0, CALLS, 0)
        assert server.request_count == CALLS and server.created_batches == []
    stored = verdicts(root / "live.duckdb")
    assert len(stored) == CRITERIA and {row[-1] for row in stored} == {"ok"}
    assert {row[3] for row in stored} == {True, False}  # both verdicts occur: an answer to the wrong call would show
    return root / "live.duckdb"


@pytest.fixture
def server() -> Iterator[BatchLoopbackJudge]:
    with BatchLoopbackJudge() as judge:
        yield judge


def batch_options(job: dict[str, Path], server: BatchLoopbackJudge, tmp: Path) -> dict:
    return {**job, "model": "model", "judge": JUDGE, "api_base": server.base_url, "db": tmp / "batch.duckdb", "cache_dir": tmp / "cache",
            "batch": True}


def test_illugenbench_sized_batch_equals_live_and_a_rerun_sends_nothing(job, live_db: Path, server: BatchLoopbackJudge, tmp_path: Path) -> None:
    result = score(**batch_options(job, server, tmp_path))
    assert (result.status, result.exit_code, result.calls, result.failed_calls) == ("finished", 0, CALLS, 0)
    [batch_id] = server.created_batches
    assert len(server.input_lines(batch_id)) == CALLS and server.request_count == 0  # every call in the batch, none live
    assert verdicts(tmp_path / "batch.duckdb") == verdicts(live_db)

    before = server.http_requests
    again = score(**batch_options(job, server, tmp_path))
    assert (again.status, again.exit_code, again.cache_hits) == ("finished", 0, CALLS)
    assert server.http_requests == before  # no upload, no batch, no poll, no live call
    assert server.created_batches == [batch_id] and server.uploads == 1
    assert verdicts(tmp_path / "batch.duckdb") == verdicts(live_db)


def kill_while_polling(server: BatchLoopbackJudge, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> str:
    """Run `rubric-judge score ... --batch` in a child process, SIGKILL it once it has polled its
    batch a few times (the batch never ends while it runs), and return the batch's id."""
    server.polls_to_finish = 10**9
    log = tmp / "killed.log"
    with log.open("wb") as out:
        child = subprocess.Popen([*CLI, "score", *args, "--batch"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, "RUBRIC_JUDGE_BATCH_POLL_S": POLL_S, **(env or {})})
        try:
            deadline = time.monotonic() + 180
            while server.polls < 3:
                assert child.poll() is None, f"the command ended before it was killed:\n{log.read_text(errors='replace')}"
                assert time.monotonic() < deadline, f"the command never polled:\n{log.read_text(errors='replace')}"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    [batch_id] = server.created_batches
    assert rows(tmp / "batch.duckdb", "SELECT batch_id, status, collected_at FROM batches") == [(batch_id, "in_progress", None)]
    server.polls_to_finish = 0
    return batch_id


def cli_args(rubric: Path, data: Path, outputs: Path, judge: str, api_base: str, tmp: Path) -> list[str]:
    return [str(rubric), "--data", str(data), "--outputs", str(outputs), "--model", "model", "--judge", judge, "--api-base", api_base,
            "--db", str(tmp / "batch.duckdb"), "--cache-dir", str(tmp / "cache")]


def test_illugenbench_sized_batch_killed_while_polling_resumes_without_a_second_submission(job, live_db: Path, server: BatchLoopbackJudge,
                                                                                            tmp_path: Path) -> None:
    batch_id = kill_while_polling(server, cli_args(job["rubric"], job["data"], job["outputs"], JUDGE, server.base_url, tmp_path), tmp_path)
    assert len(server.input_lines(batch_id)) == CALLS

    resumed = score(**batch_options(job, server, tmp_path))
    assert (resumed.status, resumed.exit_code, resumed.calls, resumed.failed_calls) == ("finished", 0, CALLS, 0)
    assert server.created_batches == [batch_id] and server.uploads == 1 and server.request_count == 0
    assert verdicts(tmp_path / "batch.duckdb") == verdicts(live_db)
    assert rows(tmp_path / "batch.duckdb", "SELECT batch_id, status, collected_at IS NOT NULL FROM batches") == [(batch_id, "completed", True)]


# -- Anthropic ------------------------------------------------------------------------------


def anthropic_base(server: BatchLoopbackJudge) -> str:
    return server.base_url.removesuffix("/v1")  # litellm (live) and the batch client add /v1/messages


def test_anthropic_batch_killed_while_polling_resumes_without_a_second_submission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process like test_batch.py's OpenAI case (the process kill is the IlluGenBench-sized test's; the ledger is the same).
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    with BatchLoopbackJudge(policy=id_policy) as server:
        common = {"data": MANIFEST, "outputs": GOOD, "model": "model", "judge": ANTHROPIC_JUDGE, "api_base": anthropic_base(server)}
        live = score(TASKS, **common, db=tmp_path / "live.duckdb", cache_dir=tmp_path / "live-cache")
        assert live.exit_code == 0
        server.clear_requests()
        server.polls_to_finish = 10**9  # never ends while the first command polls
        batch = {**common, "db": tmp_path / "batch.duckdb", "cache_dir": tmp_path / "cache", "batch": True}

        stopped_while_polling(server, rubric=TASKS, **batch)
        [batch_id] = server.created_batches
        assert batch_id.startswith("msgbatch") and len(server.input_lines(batch_id)) == live.calls
        assert rows(tmp_path / "batch.duckdb", "SELECT batch_id, status FROM batches") == [(batch_id, "in_progress")]

        server.polls_to_finish = 0
        resumed = score(TASKS, **batch)
        assert (resumed.status, resumed.exit_code, resumed.failed_calls) == ("finished", 0, 0)
        assert server.created_batches == [batch_id] and server.request_count == 0
        assert verdicts(tmp_path / "batch.duckdb") == verdicts(tmp_path / "live.duckdb")


def test_anthropic_json_schema_mode_batch_equals_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    tasks = tmp_path / "tasks"
    shutil.copytree(TASKS, tasks)
    for task in tasks.glob("*.yaml"):
        task.write_text(task.read_text(encoding="utf-8") + "judge:\n  structured_output: json_schema\n", encoding="utf-8")

    with BatchLoopbackJudge(policy=id_policy) as server:
        common = {"data": MANIFEST, "outputs": GOOD, "model": "model", "judge": ANTHROPIC_JUDGE, "api_base": anthropic_base(server)}
        live = score(tasks, **common, db=tmp_path / "live.duckdb", cache_dir=tmp_path / "live-cache")
        assert (live.exit_code, live.failed_calls) == (0, 0)
        live_params = sorted(json.dumps(body, sort_keys=True) for body in server.requests)
        assert all("output_format" in body and "tools" not in body for body in server.requests)  # the mode is Anthropic's structured outputs
        server.clear_requests()

        result = score(tasks, **common, db=tmp_path / "batch.duckdb", cache_dir=tmp_path / "cache", batch=True)
        assert [row for row in calls(tmp_path / "batch.duckdb") if row[1] != "ok"] == []
        assert (result.status, result.exit_code, result.failed_calls) == ("finished", 0, 0) and server.request_count == 0
        [batch_id] = server.created_batches
        # The batch holds the requests litellm sends live, and is created with the beta header they need.
        assert sorted(json.dumps(r["params"], sort_keys=True) for r in server.input_lines(batch_id)) == live_params
        stored = verdicts(tmp_path / "batch.duckdb")
        assert stored == verdicts(tmp_path / "live.duckdb") and {row[-1] for row in stored} == {"ok"} and {row[3] for row in stored} == {True, False}
