"""The image header check runs beside the first wave of judge calls: the first request does not
wait for thousands of headers, at most `concurrency` calls leave before the check ends, and bad
input still ends with exit 2 and nothing written to the results database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rubric_judge.run as run_module
from rubric_judge.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy = tmp_path / "illugenbench"
    shutil.copytree(EXAMPLE, copy)
    return copy


def _waiting_for_requests(server, count: int, real):
    """The real header check, started only once `count` judge requests have arrived (it fails
    the run if they never do: the check would then have held the requests back)."""

    def check(pairs, *args, **kwargs):
        deadline = time.monotonic() + 60
        while server.request_count < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} judge request(s) while the header check ran: it blocks judging")
            time.sleep(0.01)
        return real(pairs, *args, **kwargs)

    return check


def _score(example: Path, tmp_path: Path, server, concurrency: int):
    return run_module.score(example / "tasks", data=example / "manifest.jsonl", outputs=example / "outputs" / "good-model", model="m",
                            judge="openai/judge", api_base=server.base_url, transport="direct", concurrency=concurrency,
                            db=tmp_path / "runs.duckdb", cache_dir=tmp_path / "cache")


def test_the_first_request_leaves_before_the_header_check_ends(example: Path, tmp_path: Path, judge_server, monkeypatch):
    monkeypatch.setattr(run_module, "image_header_problems", _waiting_for_requests(judge_server, 1, run_module.image_header_problems))
    result = _score(example, tmp_path, judge_server, concurrency=4)
    assert result.status == "finished" and result.calls == 18 and result.failed_calls == 0


def test_bad_input_found_by_the_header_check_stops_after_one_wave_with_nothing_written(example: Path, tmp_path: Path, judge_server, monkeypatch):
    judge_server.latency = 0.2
    bad = example / "references" / "lung-nodule.png"  # the dataset's image (the judge is sent it too)
    original = bad.read_bytes()
    bad.write_bytes(b"this is not an image")
    monkeypatch.setattr(run_module, "image_header_problems", _waiting_for_requests(judge_server, 2, run_module.image_header_problems))
    with pytest.raises(UserError) as raised:
        _score(example, tmp_path, judge_server, concurrency=2)
    messages = " ".join(problem.message for problem in raised.value.problems)
    assert "lung-nodule.png" in messages and "not a recognised image" in messages
    assert "nothing was written to the database" in messages and "2 call(s) judged before the check ended are in the verdict cache" in messages
    assert judge_server.request_count == 2  # one wave (concurrency 2), answered, not more
    assert not (tmp_path / "runs.duckdb").exists()

    bad.write_bytes(original)
    monkeypatch.undo()
    again = _score(example, tmp_path, judge_server, concurrency=2)
    assert again.status == "finished" and again.cache_hits == 2 and judge_server.request_count == 2 + 16


def test_the_database_opens_once_the_first_answer_is_back(example: Path, tmp_path: Path, judge_server, monkeypatch):
    """Opening the database (DuckDB's import, a new file's tables: a few hundred ms of CPU) waits
    for the first outcome, so it runs while the judge answers the first wave instead of slowing
    that wave down. When it starts, the wave of four has arrived at the server (0.2 s latency),
    and the worker whose answer came back may have sent a fifth request."""
    from rubric_judge.store import db as db_module

    judge_server.latency = 0.2
    requests_at_opening: list[int] = []
    real_init = db_module.ResultStore.__init__

    def opening(self, path, opened=None):
        requests_at_opening.append(judge_server.request_count)
        real_init(self, path, opened)

    monkeypatch.setattr(db_module.ResultStore, "__init__", opening)
    result = _score(example, tmp_path, judge_server, concurrency=4)
    assert result.status == "finished" and result.calls == 18 and result.failed_calls == 0
    assert 4 <= requests_at_opening[0] <= 5


def test_the_database_driver_loads_and_an_existing_file_opens_while_the_header_check_runs(example: Path, tmp_path: Path, judge_server,
                                                                                            monkeypatch):
    """DuckDB's import and opening an existing file write nothing, so they do not wait for the
    header check (which must end before anything is written): in a fully cached re-run both
    start at the first cache hit, and they used to follow the check on the critical path. The
    file is brought up to date and written only after the check."""
    from rubric_judge.store import db as db_module

    _score(example, tmp_path, judge_server, concurrency=4)  # pays for every call: the re-run below is all cache hits
    events: list[str] = []
    real_check, real_driver, real_open, real_init = (run_module.image_header_problems, db_module.load_driver, db_module.open_existing,
                                                     db_module.ResultStore.__init__)

    def slow_check(pairs, *args, **kwargs):
        events.append("check started")
        time.sleep(0.5)
        problems = real_check(pairs, *args, **kwargs)
        events.append("check ended")
        return problems

    def driver():
        events.append("driver loading")
        real_driver()

    def open_existing(path):
        connection = real_open(path)
        events.append("file opened" if connection is not None else "no file")
        return connection

    def writing(self, path, opened=None):
        events.append("database written" if opened is not None else "database opened after the check")
        real_init(self, path, opened)

    monkeypatch.setattr(run_module, "image_header_problems", slow_check)
    monkeypatch.setattr(db_module, "load_driver", driver)
    monkeypatch.setattr(db_module, "open_existing", open_existing)
    monkeypatch.setattr(db_module.ResultStore, "__init__", writing)
    again = _score(example, tmp_path, judge_server, concurrency=4)
    assert again.status == "finished" and again.cache_hits == 18
    assert events.index("driver loading") < events.index("file opened") < events.index("check ended") < events.index("database written")


def test_bad_input_leaves_an_existing_database_as_it_was_though_it_was_opened_during_the_check(example: Path, tmp_path: Path,
                                                                                              judge_server):
    first = _score(example, tmp_path, judge_server, concurrency=4)
    database = tmp_path / "runs.duckdb"
    before = database.read_bytes()
    (example / "references" / "lung-nodule.png").write_bytes(b"this is not an image")
    with pytest.raises(UserError) as raised:
        _score(example, tmp_path, judge_server, concurrency=4)
    assert "not a recognised image" in " ".join(problem.message for problem in raised.value.problems)
    assert database.read_bytes() == before and not Path(f"{database}.wal").exists()
    # The connection opened during the check was closed: another process may write the file
    # (DuckDB's lock is held by a process while any connection of it is open).
    code = ("import sys, duckdb; con = duckdb.connect(sys.argv[1]); "
            "print(con.execute('SELECT status FROM runs WHERE run_id = ?', [sys.argv[2]]).fetchone()[0])")
    done = subprocess.run([sys.executable, "-c", code, str(database), first.run_id], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "finished"


@pytest.mark.parametrize("content", [b"this is not an image", b"\x89PNG\r\n\x1a\n truncated", b""])
def test_an_unreadable_output_image_is_a_missing_output_not_a_stopped_run(example: Path, tmp_path: Path, judge_server, caplog,
                                                                          content: bytes):
    """The model's broken image is reported, its sample scored by the missing-output policy (here
    `fail`: 0), and the other samples judged; the official MedGEN-Bench code likewise leaves such
    a pair out instead of stopping."""
    import duckdb

    bad = example / "outputs" / "good-model" / "lung-nodule.png"
    bad.write_bytes(content)
    with caplog.at_level("WARNING", logger="rubric_judge"):
        result = _score(example, tmp_path, judge_server, concurrency=4)
    assert result.status == "finished" and result.exit_code == 0 and result.failed_calls == 0
    assert result.calls == 15 and judge_server.request_count == 15  # 18 calls, less lung-nodule's three
    warned = [record.getMessage() for record in caplog.records if "lung-nodule.png" in record.getMessage()]
    assert len(warned) == 1 and "output image cannot be read, treated as absent" in warned[0]
    with duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True) as con:
        missing, fields = con.execute("SELECT missing_outputs, fields FROM samples WHERE run_id = ? AND sample_id = 'lung-nodule'",
                                      [result.run_id]).fetchone()
        statuses = con.execute("SELECT DISTINCT status FROM verdicts WHERE run_id = ? AND sample_id = 'lung-nodule'", [result.run_id]).fetchall()
        score, excluded = con.execute("SELECT score, missing_output FROM task_scores WHERE run_id = ? AND sample_id = 'lung-nodule'",
                                      [result.run_id]).fetchone()
    assert missing == ["generated_image"] and json.loads(fields)["generated_image"] is None
    assert statuses == [("missing_output",)]
    assert (score, excluded) == (0.0, True)
    overall = next(row for row in result.scores if row["dimension"] == "overall")
    assert overall["missing_outputs"] == 1 and overall["samples_scored"] == 6


def test_unreadable_output_images_are_named_up_to_a_limit_then_counted(example: Path, tmp_path: Path, judge_server, caplog, monkeypatch):
    monkeypatch.setattr(run_module._Planner, "UNREADABLE_NAMED", 1)
    for name in ("lung-nodule.png", "heart-chambers.png", "cell-organelles.png"):
        (example / "outputs" / "good-model" / name).write_bytes(b"not an image")
    with caplog.at_level("WARNING", logger="rubric_judge"):
        result = _score(example, tmp_path, judge_server, concurrency=4)
    assert result.status == "finished" and result.calls == 9
    messages = [record.getMessage() for record in caplog.records]
    assert sum("output image cannot be read, treated as absent" in m for m in messages) == 1
    assert sum("2 more output image(s) cannot be read and were treated as absent" in m for m in messages) == 1
