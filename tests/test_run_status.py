"""How a run that did not finish shows: killed (kill -9), hit by a full disk, or stopped because
its judge could not be reached. Each ends with a clear status that every reader shows, never a
traceback and never a partial score presented as complete."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"
CLI = str(Path(sys.executable).with_name("rubric-judge"))


def _env() -> dict[str, str]:
    return {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "200", "RUBRIC_JUDGE_BACKOFF_BASE_S": "0.01"}


def _score_args(db: Path, cache: Path, *extra: str) -> list[str]:
    return [CLI, "score", str(EXAMPLE / "tasks"), "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs", str(EXAMPLE / "outputs" / "good-model"),
            "--model", "good-model", "--db", str(db), "--cache-dir", str(cache), *extra]


def _runs(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT status, status_detail FROM runs").fetchall()
    finally:
        con.close()


def test_a_killed_run_reads_as_interrupted_with_its_coverage_and_resumes(tmp_path: Path, judge_server):
    judge_server.latency = 0.4
    db, cache = tmp_path / "r.duckdb", tmp_path / "cache"
    args = _score_args(db, cache, "--judge", "openai/judge", "--api-base", judge_server.base_url, "--concurrency", "1")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 120
    while judge_server.request_count < 6 and time.monotonic() < deadline:  # a third of the 18 calls answered
        time.sleep(0.1)
    time.sleep(1.5)  # past a flush (every second)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert 0 < judge_server.request_count < 18

    board = subprocess.run([CLI, "leaderboard", "--db", str(db)], capture_output=True, text=True, env=_env(), timeout=120)
    assert board.returncode == 0, board.stderr
    assert "interrupted" in board.stdout
    line = next(line for line in board.stdout.splitlines() if "cover" in line)
    scored = int(line.split("cover ")[1].split(" of ")[0])
    assert 0 < scored < 6 and "of 6 samples (incomplete)" in line
    ((status, detail),) = _runs(db)
    assert status == "interrupted" and "ended before it finished" in detail

    # compare refuses a partial run unless asked, and then says so
    other = [CLI, "score", str(EXAMPLE / "tasks"), "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs", str(EXAMPLE / "outputs" / "weak-model"),
             "--model", "weak-model", "--judge", "offline", "--db", str(db), "--cache-dir", str(cache)]
    assert subprocess.run(other, capture_output=True, text=True, env=_env(), timeout=300).returncode == 0
    refused = subprocess.run([CLI, "compare", "good-model", "weak-model", "--db", str(db)], capture_output=True, text=True, env=_env(), timeout=120)
    assert refused.returncode == 2 and "did not finish" in refused.stderr and "Traceback" not in refused.stderr
    allowed = subprocess.run([CLI, "compare", "good-model", "weak-model", "--db", str(db), "--allow-partial"],
                             capture_output=True, text=True, env=_env(), timeout=120)
    assert allowed.returncode == 0 and "partial run:" in allowed.stderr and "interrupted" in allowed.stderr

    again = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(_runs(db)) == [("finished", None), ("finished", None)]


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare to mount a small tmpfs in a private mount namespace")
def test_a_full_disk_ends_the_run_with_exit_2_and_a_run_marked_failed(tmp_path: Path):
    # Long texts, so the database outgrows a 1.6 MB file system after the samples are written.
    import random

    rng = random.Random(0)
    rubric = tmp_path / "r.yaml"
    rubric.write_text("""rubric: textjob
version: 1
judge: {model: openai/gpt-4o, mode: per_sample}
inputs: {question: text, response: text}
outputs: [response]
verdict: binary
dimensions: [quality]
criteria:
  - {id: c1, dimension: quality, weight: 1, text: "The answer is correct."}
  - {id: c2, dimension: quality, weight: 1, text: "The answer is concise."}
prompt: |
  Question: {{ question }}
  Answer: {{ response }}
scoring: {method: weighted_points}
""")
    with (tmp_path / "m.jsonl").open("w") as manifest, (tmp_path / "o.jsonl").open("w") as outputs:
        for i in range(400):
            manifest.write(json.dumps({"id": f"s{i}", "question": "q" * rng.randint(10, 3000)}) + "\n")
            outputs.write(json.dumps({"id": f"s{i}", "response": "".join(rng.choice("abcdefgh ") for _ in range(rng.randint(50, 4000)))}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    disk = tmp_path / "disk"
    disk.mkdir()
    score = " ".join([CLI, "score", str(rubric), "--data", str(tmp_path / "m.jsonl"), "--outputs", str(tmp_path / "o.jsonl"), "--model", "m",
                      "--judge", "offline", "--db", f"{disk}/x.duckdb", "--cache-dir", str(tmp_path / "cache")])
    shell = (f"mount -t tmpfs -o size=1600k tmpfs {disk} && "
             f"{{ {score} > {out}/score.out 2> {out}/score.err; echo $? > {out}/score.rc; }} && "
             f"{CLI} leaderboard --db {disk}/x.duckdb > {out}/board.out 2> {out}/board.err; "
             f"{CLI} query 'SELECT status, status_detail FROM runs' --db {disk}/x.duckdb --format json > {out}/runs.json")
    subprocess.run(["unshare", "--mount", "sh", "-c", shell], check=True, env=_env(), timeout=300)

    err = (out / "score.err").read_text()
    assert (out / "score.rc").read_text().strip() == "2", err
    flat = " ".join(err.split())  # rich wraps long lines where the path's length puts the break
    assert "Traceback" not in err and "No space left on device" in flat
    assert "RuntimeWarning" not in err  # a call cancelled mid-request leaves no warning above the message
    assert f"{disk}/x.duckdb" in flat and "free space" in flat
    ((run),) = json.loads((out / "runs.json").read_text())
    assert run["status"] == "failed" and "No space left on device" in run["status_detail"]
    board = (out / "board.out").read_text()
    assert "failed" in board and "of 400 samples (incomplete)" in board


@pytest.mark.parametrize("transport", ["direct", "litellm"])
def test_an_unreachable_judge_stops_the_run_early_with_one_message(tmp_path: Path, transport: str):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = tmp_path / "r.duckdb"
    done = subprocess.run(_score_args(db, tmp_path / "cache", "--judge", "openai/judge", "--api-base", f"http://127.0.0.1:{port}/v1",
                                      "--transport", transport, "--max-unreachable", "10"),
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "unreachable for 10 attempts in a row" in done.stderr
    assert done.stderr.count("\n") <= 4, done.stderr  # one message, not a line per failed attempt
    ((status, detail),) = _runs(db)
    assert status == "failed" and "unreachable" in detail
    con = duckdb.connect(str(db), read_only=True)
    attempts, not_run = con.execute("SELECT sum(attempts), count(*) FILTER (WHERE error LIKE 'not run:%') FROM judge_calls").fetchone()
    con.close()
    assert attempts < 18 * 6  # far fewer than every call's full retries
    assert not_run > 0
