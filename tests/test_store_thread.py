"""The results database is written on a thread of its own while judging: DuckDB executes without
the GIL, so the event loop goes on sending requests and reading answers during a write (35-45 ms
each, whatever its size). Every answer still lands, and a write that fails stops the run."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

import duckdb
import pytest

import rubric_judge.run as run_module
from rubric_judge.errors import Location, Problem
from rubric_judge.store import db as db_module

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy = tmp_path / "illugenbench"
    shutil.copytree(EXAMPLE, copy)
    return copy


def _score(example: Path, tmp_path: Path, server, concurrency: int):
    return run_module.score(example / "tasks", data=example / "manifest.jsonl", outputs=example / "outputs" / "good-model", model="m",
                            judge="openai/judge", api_base=server.base_url, transport="direct", concurrency=concurrency,
                            db=tmp_path / "runs.duckdb", cache_dir=tmp_path / "cache")


def test_answers_are_written_on_the_databases_thread_while_judging_and_every_one_lands(example: Path, tmp_path: Path, judge_server,
                                                                                      monkeypatch):
    monkeypatch.setattr(run_module, "FLUSH_SECONDS", 0.0)  # once the database is open, a write after every answer
    judge_server.latency = 0.1
    writes: list[tuple[str, int]] = []
    real = db_module.ResultStore.write_outcomes

    def recording(self, run_id, outcomes):
        outcomes = list(outcomes)
        writes.append((threading.current_thread().name, len(outcomes)))
        return real(self, run_id, outcomes)

    monkeypatch.setattr(db_module.ResultStore, "write_outcomes", recording)
    result = _score(example, tmp_path, judge_server, concurrency=2)
    assert result.status == "finished" and result.calls == 18 and result.failed_calls == 0
    while_judging = [name for name, _ in writes[:-1]]  # the last may be the final write, after judging, on the caller's thread
    assert while_judging and all(name.startswith("rubric-judge-store") for name in while_judging), writes
    assert sum(count for _, count in writes) == 18
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT call_id) FROM judge_calls").fetchone() == (18, 18)
        assert con.execute("SELECT count(*) FROM verdicts WHERE status = 'ok'").fetchone()[0] == 31
    finally:
        con.close()


def test_a_write_that_fails_on_the_databases_thread_stops_judging_and_the_run_reads_failed(example: Path, tmp_path: Path, judge_server,
                                                                                          monkeypatch):
    monkeypatch.setattr(run_module, "FLUSH_SECONDS", 0.0)
    judge_server.latency = 0.1

    def failing(self, run_id, outcomes):
        raise db_module.StorageError(Problem(Location(self.path), "cannot write judge answers in the results database: disk full",
                                             fix="free space"))

    monkeypatch.setattr(db_module.ResultStore, "write_outcomes", failing)
    with pytest.raises(db_module.StorageError, match="disk full"):
        _score(example, tmp_path, judge_server, concurrency=1)
    paid = judge_server.request_count
    assert paid < 18  # judging stopped at the failure, not after the last call
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT status, status_detail FROM runs").fetchall() == [
            ("failed", "cannot write judge answers in the results database: disk full")]
    finally:
        con.close()

    monkeypatch.undo()
    again = _score(example, tmp_path, judge_server, concurrency=1)
    assert again.status == "finished" and again.cache_hits == paid and judge_server.request_count == 18


def test_settling_waits_for_a_write_in_flight_even_when_the_run_is_cancelled_meanwhile():
    """Ctrl-C cancels the run while a write runs on the database's thread: the run's last lines
    (its final write, its status, closing) use the same connection, so they wait for it."""
    import asyncio
    import concurrent.futures
    import time

    opening = object.__new__(run_module._StoreOpening)
    opening._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rubric-judge-store")
    finished = threading.Event()

    def slow_write() -> None:
        time.sleep(0.3)
        finished.set()

    opening._writes = [opening._pool.submit(slow_write)]

    async def cancelled_while_settling() -> bool:
        settling = asyncio.ensure_future(opening.settle())
        await asyncio.sleep(0.05)
        settling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await settling
        return finished.is_set()

    assert asyncio.run(cancelled_while_settling())
    assert opening._writes == []


def test_a_database_slower_than_the_judge_holds_judging_back_instead_of_piling_up_writes(example: Path, tmp_path: Path, judge_server,
                                                                                          monkeypatch):
    monkeypatch.setattr(run_module, "FLUSH_SECONDS", 0.0)  # once the database is open, a write after every answer
    judge_server.latency = 0.05
    real_write, real_submit = db_module.ResultStore.write_outcomes, run_module._StoreOpening.write_outcomes
    waiting: list[int] = []

    def slow_write(self, run_id, outcomes):
        time.sleep(0.25)  # five times slower than the judge answers
        return real_write(self, run_id, outcomes)

    def counting(self, outcomes):
        real_submit(self, outcomes)
        waiting.append(sum(not write.done() for write in self._writes))

    monkeypatch.setattr(db_module.ResultStore, "write_outcomes", slow_write)
    monkeypatch.setattr(run_module._StoreOpening, "write_outcomes", counting)
    result = _score(example, tmp_path, judge_server, concurrency=1)
    assert result.status == "finished" and result.calls == 18
    assert len(waiting) >= 6, waiting  # enough writes while judging for a backlog to form
    assert max(waiting) <= run_module._StoreOpening.MAX_PENDING_WRITES, waiting
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM judge_calls").fetchone()[0] == 18
    finally:
        con.close()
