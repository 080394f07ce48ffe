"""`rubric-judge score` end to end against the loopback judge: known scores, faults, kill -9 and
resume, the verdict cache, secrets, and the read-only query/export commands."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from rubric_judge.cache.verdicts import CacheMode, VerdictCache
from rubric_judge.judge.executor import ExecutorSettings
from rubric_judge.run import score
from rubric_judge.testing.loopback import Fault

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
JUDGE = "openai/test-judge"
TASKS = EXAMPLE / "tasks"
MANIFEST = EXAMPLE / "manifest.jsonl"
GOOD = EXAMPLE / "outputs" / "good-model"
WEAK = EXAMPLE / "outputs" / "weak-model"
CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]
SECRET = "sk-SECRET-should-never-be-stored-12345"


def load_tasks(tasks_dir: Path = TASKS) -> dict[str, list[dict]]:
    tasks = {}
    for path in sorted(tasks_dir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        tasks[doc["task"]] = doc["criteria"]
    return tasks


TASK_CRITERIA = load_tasks()
N_CALLS = sum(len({c["dimension"] for c in criteria}) for criteria in TASK_CRITERIA.values())  # per_dimension mode
N_VERDICTS = sum(len(criteria) for criteria in TASK_CRITERIA.values())


def policy_met(criterion_id: str) -> bool:
    return criterion_id.endswith("-1") or criterion_id == "scientific_accuracy-2"  # mirrors conftest.id_policy


def weighted(criteria: list[dict], present: bool) -> float | None:
    positive = sum(c["weight"] for c in criteria if c["weight"] > 0)
    if positive == 0:
        return None  # excluded
    if not present:
        return 0.0  # missing output under the `fail` policy: every criterion unmet
    return sum(c["weight"] * policy_met(c["id"]) for c in criteria) / positive


def expected_scores(missing: set[str] = frozenset()) -> tuple[dict[str, float], dict[str, float]]:
    """(per-task pooled score, leaderboard: overall and per dimension), computed from the task YAML."""
    per_task = {task: weighted(criteria, task not in missing) for task, criteria in TASK_CRITERIA.items()}
    board = {"overall": _mean(per_task.values())}
    dimensions = {c["dimension"] for criteria in TASK_CRITERIA.values() for c in criteria}
    for dimension in dimensions:
        board[dimension] = _mean(
            weighted([c for c in criteria if c["dimension"] == dimension], task not in missing)
            for task, criteria in TASK_CRITERIA.items() if any(c["dimension"] == dimension for c in criteria)
        )
    return per_task, board


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values)


def options(server, tmp: Path, model: str = "good-model", outputs: Path = GOOD, tasks: Path = TASKS, **extra) -> dict:
    """`score`'s keyword arguments for a run through the loopback judge."""
    return dict(
        rubric=tasks, data=MANIFEST, outputs=outputs, model=model, judge=JUDGE, api_base=server.base_url,
        db=tmp / "results.duckdb", cache_dir=tmp / "cache", concurrency=extra.pop("concurrency", 4),
        timeout=extra.pop("timeout", 10.0), **extra,
    )


def query(db: Path, sql: str, params=()):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def leaderboard(db: Path, model: str) -> dict[str, float]:
    return dict(query(db, "SELECT dimension, score FROM leaderboard WHERE model_name = ?", [model]))


def task_scores(db: Path, model: str) -> dict[str, float]:
    return dict(query(db, "SELECT t.sample_id, t.score FROM task_scores t JOIN runs r USING (run_id) WHERE r.model_name = ?", [model]))


def assert_scores(db: Path, model: str, missing: set[str] = frozenset()) -> None:
    per_task, board = expected_scores(missing)
    got_tasks, got_board = task_scores(db, model), leaderboard(db, model)
    assert got_tasks.keys() == per_task.keys()
    for task, value in per_task.items():
        assert got_tasks[task] == pytest.approx(value, abs=1e-12, rel=0), task
    assert got_board.keys() == board.keys()
    for dimension, value in board.items():
        assert got_board[dimension] == pytest.approx(value, abs=1e-12, rel=0), dimension


def prompt_text(body: dict) -> str:
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(parts)


SAMPLE_PROMPTS = {json.loads(line)["id"]: json.loads(line)["prompt"] for line in MANIFEST.read_text().splitlines() if line.strip()}


def call_id_of(body: dict) -> str:
    """The judge_calls.call_id a request belongs to, read from its prompt (per_dimension mode, replicate 0)."""
    text = prompt_text(body)
    [sample] = [sample for sample, prompt in SAMPLE_PROMPTS.items() if prompt in text]
    [dimension] = [d for d in ("scientific_accuracy", "structural_correctness", "semantic_alignment") if f"on {d.replace('_', ' ')} (" in text]
    return f"{sample}/{dimension}/0"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRIC_JUDGE_API_KEY", "sk-loopback-test")


@pytest.fixture(scope="module")
def scored_db(module_judge_server, tmp_path_factory) -> Path:
    """good-model and weak-model scored once with a fault-free judge (shared by several tests)."""
    tmp = tmp_path_factory.mktemp("scored")
    os.environ.setdefault("RUBRIC_JUDGE_API_KEY", "sk-loopback-test")
    assert score(**options(module_judge_server, tmp)).exit_code == 0
    assert score(**options(module_judge_server, tmp, model="weak-model", outputs=WEAK)).exit_code == 0
    return tmp / "results.duckdb"


# 1. Known scores ------------------------------------------------------------------------------


def test_known_scores_match_independent_computation(scored_db: Path) -> None:
    assert_scores(scored_db, "good-model")
    assert_scores(scored_db, "weak-model", missing={"dna-double-helix"})
    per_task, _ = expected_scores({"dna-double-helix"})
    assert per_task["dna-double-helix"] == 0.0  # counted in the mean, as zero
    [(missing, scored)] = query(scored_db, "SELECT missing_outputs, samples_scored FROM leaderboard WHERE model_name = 'weak-model' AND dimension = 'overall'")
    assert (missing, scored) == (1, 6)
    statuses = dict(query(scored_db, "SELECT v.status, count(*) FROM verdicts v JOIN runs r USING (run_id) WHERE r.model_name = 'weak-model' GROUP BY ALL"))
    assert statuses == {"ok": N_VERDICTS - len(TASK_CRITERIA["dna-double-helix"]), "missing_output": len(TASK_CRITERIA["dna-double-helix"])}
    calls = query(scored_db, "SELECT count(*), count(DISTINCT call_id) FROM judge_calls j JOIN runs r USING (run_id) WHERE r.model_name = 'good-model'")
    assert calls == [(N_CALLS, N_CALLS)]
    # `auto` sent these through the direct transport (a loopback server, an openai/ model) and says so.
    assert query(scored_db, "SELECT DISTINCT config->>'transport' FROM runs") == [("direct",)]


# 2. Faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["direct", "litellm"])  # both transports meet every fault the same way
def test_transient_faults_are_retried_to_the_fault_free_scores(judge_server, tmp_path: Path, transport: str) -> None:
    # A fault-free run first (also warms litellm up, so cold-start time does not eat the 1 s timeout).
    assert score(**options(judge_server, tmp_path, model="fault-free", cache=CacheMode.off, transport=transport)).exit_code == 0
    # Each fault hits the first request of a different call, so no call meets two faults whatever the timing.
    planned = {
        "heart-chambers/scientific_accuracy/0": Fault.http_429(retry_after_s=0.2),
        "cell-organelles/scientific_accuracy/0": Fault.http_500(),
        "dna-double-helix/semantic_alignment/0": Fault.slow(delay_s=3.0),
        "lung-nodule/structural_correctness/0": Fault.malformed(),
        "nephron-diagram/semantic_alignment/0": Fault.drop_criterion(),
        "appendectomy-incision/scientific_accuracy/0": Fault.out_of_range(),
    }
    pending = dict(planned)
    judge_server.fault_rule = lambda body, index: pending.pop(call_id_of(body), None)
    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, timeout=1.0, transport=transport)).exit_code == 0
    assert not pending
    db = tmp_path / "results.duckdb"
    # (avg() sums in no fixed order, so equal up to rounding)
    assert task_scores(db, "good-model") == pytest.approx(task_scores(db, "fault-free"), abs=1e-12, rel=0)
    assert leaderboard(db, "good-model") == pytest.approx(leaderboard(db, "fault-free"), abs=1e-12, rel=0)
    assert_scores(db, "good-model")
    assert query(db, "SELECT DISTINCT status FROM verdicts") == [("ok",)]
    assert query(db, "SELECT DISTINCT status FROM judge_calls") == [("ok",)]
    assert judge_server.request_count == N_CALLS + len(planned)
    calls = {row[0]: row[1:] for row in query(db, "SELECT j.call_id, j.attempts, j.latency_ms FROM judge_calls j JOIN runs r USING (run_id) WHERE r.model_name = 'good-model'")}
    retried = [call_id for call_id, fault in planned.items() if fault.kind in ("http_429", "http_500", "slow")]
    assert {call_id: calls[call_id][0] for call_id in retried} == dict.fromkeys(retried, 2)
    # An invalid answer is re-asked inside the same transport attempt.
    assert {call_id: calls[call_id][0] for call_id in planned if call_id not in retried} == dict.fromkeys(set(planned) - set(retried), 1)
    assert sum(attempts for attempts, _ in calls.values()) == N_CALLS + len(retried)
    assert calls["heart-chambers/scientific_accuracy/0"][1] >= 200  # waited for Retry-After
    assert calls["dna-double-helix/semantic_alignment/0"][1] >= 1000  # waited out the 1 s timeout


@pytest.mark.parametrize("transport", ["direct", "litellm"])  # both transports meet every fault the same way
def test_faults_that_never_stop_end_unscored_or_error_never_unmet(judge_server, tmp_path: Path, transport: str) -> None:
    def rule(body, index):
        text = prompt_text(body)
        if "human heart" in text and "on scientific accuracy" in text:
            return "malformed"  # the judge keeps answering, never validly
        if "DNA double helix" in text and "on structural correctness" in text:
            return "http_500"  # the judge never answers
        if "single animal cell" in text and "on semantic alignment" in text:
            return Fault.truncated(finish_reason="length")  # answered, but cut off at max_tokens
        return None

    judge_server.fault_rule = rule
    assert score(**options(judge_server, tmp_path, transport=transport)).exit_code == 1  # failed calls -> exit 1
    db = tmp_path / "results.duckdb"
    calls = {row[0]: row[1:] for row in query(db, "SELECT call_id, status, attempts, response FROM judge_calls")}
    assert len(calls) == N_CALLS
    assert calls["heart-chambers/scientific_accuracy/0"][:1] == ("unscored",)
    status, attempts, response = calls["dna-double-helix/structural_correctness/0"]
    assert (status, response) == ("error", None) and attempts > 1
    bodies = [prompt_text(body) for body in judge_server.requests]
    # Every transport attempt is one request (no hidden retries under the executor's count) ...
    assert sum("DNA double helix" in t and "on structural correctness" in t for t in bodies) == attempts == ExecutorSettings.max_attempts
    # ... and an invalid answer is re-asked a bounded number of times within one attempt.
    assert calls["heart-chambers/scientific_accuracy/0"][1] == 1
    assert sum("human heart" in t and "on scientific accuracy" in t for t in bodies) == ExecutorSettings.validation_retries + 1
    cell_status, cell_attempts, cell_response = calls["cell-organelles/semantic_alignment/0"]
    assert (cell_status, cell_attempts, cell_response) == ("unscored", 1, None)
    verdicts = query(db, "SELECT sample_id, dimension, status, met FROM verdicts WHERE status <> 'ok'")
    heart = [c for c in TASK_CRITERIA["heart-chambers"] if c["dimension"] == "scientific_accuracy"]
    dna = [c for c in TASK_CRITERIA["dna-double-helix"] if c["dimension"] == "structural_correctness"]
    cell = [c for c in TASK_CRITERIA["cell-organelles"] if c["dimension"] == "semantic_alignment"]
    assert sorted(verdicts) == sorted(
        [("heart-chambers", "scientific_accuracy", "unscored", None)] * len(heart)
        + [("dna-double-helix", "structural_correctness", "error", None)] * len(dna)
        + [("cell-organelles", "semantic_alignment", "unscored", None)] * len(cell)
    )
    [(unscored,)] = query(db, "SELECT unscored_verdicts FROM leaderboard WHERE dimension = 'overall'")
    assert unscored == len(heart) + len(dna) + len(cell)
    # The paid tokens of invalid answers are accounted for; a call that never got an answer paid none.
    assert query(db, "SELECT call_id FROM judge_calls WHERE status = 'unscored' AND prompt_tokens = 0") == []
    # Nothing failed is cached: a fault-free re-run asks exactly those three calls again and scores fully.
    judge_server.fault_rule = None
    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, transport=transport)).exit_code == 0
    assert judge_server.request_count == 3
    assert_scores(db, "good-model")


def test_a_judge_that_never_answers_validly_gives_no_score_not_zero_from_missing_outputs(judge_server, tmp_path: Path) -> None:
    """No number from nothing: every judged verdict unscored and one output missing must not read
    as a score of 0.000 (the missing output alone, under `missing_output: fail`), nor get an
    interval; the leaderboard says why instead."""
    outputs = tmp_path / "outputs"
    shutil.copytree(GOOD, outputs)
    missing = sorted(outputs.iterdir())[0]
    missing.unlink()  # one task without a generated image: scored 0 under the default `fail`
    judge_server.fault_rule = lambda body, index: "malformed"  # the judge answers, never validly
    assert score(**options(judge_server, tmp_path, outputs=outputs)).exit_code == 1
    db = tmp_path / "results.duckdb"
    assert query(db, "SELECT count(*) FROM verdicts WHERE status = 'ok'") == [(0,)]
    assert query(db, "SELECT count(*) FROM verdicts WHERE status = 'missing_output'")[0][0] > 0
    rows = query(db, "SELECT dimension, score, samples_scored, samples_total, unscored_verdicts, score_note FROM leaderboard")
    assert rows and all(score_ is None and scored == 0 and total == len(TASK_CRITERIA) for _, score_, scored, total, _, _ in rows)
    overall = next(r for r in rows if r[0] == "overall")
    assert overall[4] > 0 and overall[5] == f"no judge score: the judge gave no valid verdict ({overall[4]} unscored or failed); the missing outputs alone are not a score"
    assert query(db, "SELECT count(*) FROM leaderboard_ci WHERE score IS NOT NULL OR ci_low IS NOT NULL OR ci_high IS NOT NULL") == [(0,)]
    assert query(db, "SELECT count(*) FROM _sample_scores") == [(0,)]
    # Once the judge answers, the same database shows real scores again, and no note.
    judge_server.fault_rule = None
    assert score(**options(judge_server, tmp_path, outputs=outputs)).exit_code == 0
    assert query(db, "SELECT count(*) FROM leaderboard WHERE score IS NULL OR score_note IS NOT NULL") == [(0,)]


# 3. kill -9, then resume ---------------------------------------------------------------------


def score_argv(server, tmp: Path, *extra: str) -> list[str]:
    return [*CLI, "score", str(TASKS), "--data", str(MANIFEST), "--outputs", str(GOOD), "--model", "good-model",
            "--judge", JUDGE, "--api-base", server.base_url, "--db", str(tmp / "results.duckdb"),
            "--cache-dir", str(tmp / "cache"), *extra]


def test_kill_9_then_resume_loses_and_duplicates_nothing(judge_server, tmp_path: Path) -> None:
    judge_server.latency = 0.3
    child = subprocess.Popen(score_argv(judge_server, tmp_path, "--concurrency", "2"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env={**os.environ, "RUBRIC_JUDGE_API_KEY": "sk-loopback-test"})
    try:
        deadline = time.monotonic() + 60
        while judge_server.request_count < 6:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the child never got going"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    time.sleep(0.2)
    first = judge_server.request_count
    assert 6 <= first < N_CALLS
    judge_server.latency = 0.0
    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, concurrency=2)).exit_code == 0
    second = judge_server.request_count
    # Answered calls were cached; only the calls never sent, plus at most the 2 in flight, are asked again.
    assert N_CALLS - first <= second <= N_CALLS - first + 2
    db = tmp_path / "results.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT (sample_id, criterion_id, replicate)) FROM verdicts") == [(N_VERDICTS, N_VERDICTS)]
    assert query(db, "SELECT count(*), count(DISTINCT call_id) FROM judge_calls") == [(N_CALLS, N_CALLS)]
    assert query(db, "SELECT DISTINCT status FROM verdicts") == [("ok",)]
    assert query(db, "SELECT count(*) FILTER (WHERE cache_hit) FROM judge_calls") == [(N_CALLS - second,)]
    assert query(db, "SELECT status FROM runs") == [("finished",)]
    assert_scores(db, "good-model")


# 4. Cache ------------------------------------------------------------------------------------


def cache_entries(directory: Path) -> int:
    with VerdictCache(directory, CacheMode.read_only) as cache:
        return sum(1 for _ in cache.entries())


def edit_criterion(tasks: Path, task: str, criterion_id: str, suffix: str) -> None:
    path = tasks / f"{task}.yaml"
    doc = yaml.safe_load(path.read_text())
    for criterion in doc["criteria"]:
        if criterion["id"] == criterion_id:
            criterion["text"] += suffix
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_cache_modes(judge_server, tmp_path: Path) -> None:
    db = tmp_path / "results.duckdb"
    assert score(**options(judge_server, tmp_path)).exit_code == 0
    assert judge_server.request_count == N_CALLS
    assert cache_entries(tmp_path / "cache") == N_CALLS

    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path)).exit_code == 0
    assert judge_server.request_count == 0
    assert query(db, "SELECT count(*) FILTER (WHERE cache_hit), count(*) FROM judge_calls") == [(N_CALLS, N_CALLS)]

    tasks = tmp_path / "tasks"
    shutil.copytree(TASKS, tasks)
    edit_criterion(tasks, "heart-chambers", "structural_correctness-2", " (edited)")
    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, tasks=tasks)).exit_code == 0
    assert judge_server.request_count == 1
    assert "(edited)" in json.dumps(judge_server.requests[0])
    assert "on structural correctness" in prompt_text(judge_server.requests[0])
    assert cache_entries(tmp_path / "cache") == N_CALLS + 1

    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, cache=CacheMode.off)).exit_code == 0
    assert judge_server.request_count == N_CALLS

    edit_criterion(tasks, "lung-nodule", "semantic_alignment-1", " (edited again)")
    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, tasks=tasks, cache=CacheMode.read_only)).exit_code == 0
    assert judge_server.request_count == 1  # the edited call; every other one read from the cache
    assert cache_entries(tmp_path / "cache") == N_CALLS + 1  # read-only wrote nothing new
    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, tasks=tasks, cache=CacheMode.read_only)).exit_code == 0
    assert judge_server.request_count == 1  # still not cached


# 5. Secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["direct", "litellm"])
def test_api_key_reaches_the_judge_but_is_never_stored_or_printed(judge_server, tmp_path: Path, monkeypatch, capfd, transport: str) -> None:
    from rubric_judge.cli.progress import RichProgress
    from rubric_judge.cli.score import print_summary

    monkeypatch.setenv("RUBRIC_JUDGE_API_KEY", SECRET)
    with RichProgress() as on_progress:  # what the CLI prints, rendered in process
        result = score(**options(judge_server, tmp_path, transport=transport), on_progress=on_progress)
    print_summary(result)
    assert result.exit_code == 0
    assert judge_server.request_count == N_CALLS
    assert judge_server.authorization and all(h == f"Bearer {SECRET}" for h in judge_server.authorization)
    captured = capfd.readouterr()
    assert "Judge:" in captured.out
    assert SECRET not in captured.out and SECRET not in captured.err
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "results.duckdb" for p in files) and any("cache" in p.parts for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in json.dumps(query(tmp_path / "results.duckdb", "SELECT config FROM runs"))


# 6. query / export ---------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_query_refuses_writes_and_exports(scored_db: Path, tmp_path: Path) -> None:
    refused = cli("query", "DROP TABLE runs", "--db", str(scored_db))
    assert refused.returncode == 2
    assert "read-only" in refused.stderr and "DROP" in refused.stderr
    assert query(scored_db, "SELECT count(*) FROM runs") == [(2,)]

    listed = cli("query", "SELECT model_name, score FROM leaderboard WHERE dimension = 'overall' ORDER BY model_name", "--db", str(scored_db), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["model_name"] for r in rows] == ["good-model", "weak-model"]
    assert rows[0]["score"] == pytest.approx(expected_scores()[1]["overall"], abs=1e-12)

    out = tmp_path / "x.parquet"
    exported = cli("export", "--table", "verdicts", "--out", str(out), "--db", str(scored_db))
    assert exported.returncode == 0, exported.stderr
    [(count,)] = query(scored_db, "SELECT count(*) FROM verdicts")
    con = duckdb.connect()
    try:
        [(read_back,)] = con.execute("SELECT count(*) FROM read_parquet(?)", [str(out)]).fetchall()
    finally:
        con.close()
    assert read_back == count == 2 * N_VERDICTS
    assert not out.with_name(out.name + ".partial").exists()
