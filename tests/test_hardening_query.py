"""`rubric-judge query` stays in the user's control: Ctrl-C stops it, a table shows a bounded
number of rows and characters, csv and json stream every row, DuckDB gets a memory limit; and
every usage error of the CLI is click's usage message with exit code 2, never a traceback.

The CLI runs as the installed console script, in a subprocess, as a user would run it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rubric_judge.errors import UserError
from rubric_judge.store.db import connect
from rubric_judge.store.query import CHUNK_ROWS, export_table, open_query

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("rubric-judge")
# Minutes of work on any machine: 10^12 products to sum.
ENDLESS = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b"

pytestmark = pytest.mark.skipif(not SCRIPT.exists() and shutil.which("rubric-judge") is None, reason="the rubric-judge console script is not installed")


def _command() -> list[str]:
    return [str(SCRIPT) if SCRIPT.exists() else shutil.which("rubric-judge")]


def _env() -> dict[str, str]:
    # The console script imports this tree, whatever is installed.
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *args], capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT)


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "results.duckdb"
    connect(path).close()
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["score", "--bogus"],
        ["nosuchcmd"],
        ["score", "examples/illugenbench/tasks"],  # without the required --data
        ["query", "SELECT 1", "--max-rows", "0"],
    ],
    ids=["bogus-option", "bogus-command-option", "unknown-command", "missing-required-option", "out-of-range-value"],
)
def test_usage_errors_are_usage_messages_with_exit_code_2(args: list[str]):
    done = cli(*args)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Usage:" in output and "Error:" in output
    assert "Traceback" not in output


def _started_in_query(process: subprocess.Popen) -> None:
    """Waits until the process runs the query: DuckDB's worker threads exist only from the
    connection on, so more than one thread means the imports (where Ctrl-C would be Python's
    plain KeyboardInterrupt) are over."""
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        threads = next((int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("Threads:")), 1)
        if threads > 1:
            return
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="watches the process's threads in /proc")
@pytest.mark.parametrize("format", ["table", "csv"])
def test_ctrl_c_stops_a_long_query_with_exit_code_130(db: Path, format: str):
    # A shell that starts jobs in the background has them ignore SIGINT, and children inherit
    # that; the CLI must see SIGINT as a terminal's Ctrl-C delivers it.
    process = subprocess.Popen([*_command(), "query", ENDLESS, "--db", str(db), "--format", format], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _started_in_query(process)
        time.sleep(1)  # well into the query
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        # Without the interrupt the query would run for minutes: any generous bound tells.
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, err
    assert err.strip() == "interrupted: the query was stopped"
    assert "Traceback" not in out + err


def test_table_shows_at_most_max_rows_and_says_more_were_left_out(db: Path):
    # Two million rows would take minutes to lay out as a table, and gigabytes.
    done = cli("query", "SELECT range AS n FROM range(2000000)", "--db", str(db))
    assert done.returncode == 0, done.stderr
    shown = [line.strip("│ ") for line in done.stdout.splitlines() if line.startswith("│")]
    assert shown == [str(n) for n in range(1000)]
    assert "first 1000 row(s) shown; more were left out" in done.stdout

    done = cli("query", "SELECT range AS n FROM range(7)", "--db", str(db), "--max-rows", "7")
    assert [line.strip("│ ") for line in done.stdout.splitlines() if line.startswith("│")] == [str(n) for n in range(7)]
    assert "7 row(s)" in done.stdout and "left out" not in done.stdout


@pytest.mark.parametrize("format", ["csv", "json"])
def test_csv_and_json_give_every_row_whatever_max_rows_says(db: Path, format: str):
    rows = 3 * CHUNK_ROWS + 5  # several chunks and a partial one
    done = cli("query", f"SELECT range AS n, 'a,\"b\"' AS s FROM range({rows})", "--db", str(db), "--format", format, "--max-rows", "10")
    assert done.returncode == 0, done.stderr
    if format == "csv":
        lines = done.stdout.splitlines()
        assert lines[0] == "n,s" and len(lines) == rows + 1 and lines[-1] == f'{rows - 1},"a,""b"""'
    else:
        assert json.loads(done.stdout) == [{"n": n, "s": 'a,"b"'} for n in range(rows)]


def test_streamed_json_is_the_text_json_dumps_gives(capsys: pytest.CaptureFixture[str]):
    from rubric_judge.cli.query import _print

    for rows in ([], [(1, "x\ny", None)], [(1, "a", 0.5), (2, "b", None)]):
        _print(["n", "s", "v"], rows, "json")
        expected = json.dumps([dict(zip(["n", "s", "v"], row, strict=True)) for row in rows], default=str, indent=1) + "\n"
        assert capsys.readouterr().out == expected


def test_results_arrive_in_chunks_not_all_at_once(db: Path):
    with open_query(db, "SELECT * FROM range(5000)") as result:
        assert [len(chunk) for chunk in result.chunks()] == [CHUNK_ROWS, CHUNK_ROWS, 5000 - 2 * CHUNK_ROWS]


def test_a_table_cell_shows_a_bounded_part_of_a_long_value(db: Path):
    done = cli("query", "SELECT repeat('x', 1000000) AS s, '[/]' AS markup", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "(999800 more characters)" in done.stdout
    assert done.stdout.count("x") < 1000
    assert "[/]" in done.stdout  # a value is shown as data, never read as rich markup


def test_memory_limit_option_sets_duckdbs_limit_and_locks_it(db: Path):
    setting = "SELECT current_setting('memory_limit') AS m, current_setting('lock_configuration') AS locked"
    done = cli("query", setting, "--db", str(db), "--memory-limit", "300MiB", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "300.0 MiB,True"
    done = cli("query", setting, "--db", str(db), "--format", "csv")
    assert done.stdout.splitlines()[1] == "1.8 GiB,True"  # the 2GB default, as DuckDB shows it


def test_a_query_over_the_memory_limit_is_a_clear_error(db: Path):
    big = "SELECT length(string_agg(range::VARCHAR, ',')) AS n FROM range(5000000)"
    done = cli("query", big, "--db", str(db), "--memory-limit", "20MB")
    assert done.returncode == 2
    assert "Out of Memory" in done.stderr and "pass a larger --memory-limit" in done.stderr
    assert "Traceback" not in done.stderr
    assert cli("query", big, "--db", str(db), "--format", "csv").stdout.splitlines() == ["n", "38888889"]


def test_a_bad_memory_limit_is_refused_before_any_sql_runs(db: Path, tmp_path: Path):
    done = cli("query", "SELECT 1", "--db", str(db), "--memory-limit", "lots; DROP TABLE runs")
    assert done.returncode == 2 and "is not a memory size" in done.stderr
    out = tmp_path / "runs.csv"
    with pytest.raises(UserError, match="is not a memory size"):
        export_table(db, "runs", out, memory_limit="1x")
    assert not out.exists() and not out.with_name("runs.csv.partial").exists()
    assert export_table(db, "runs", out, memory_limit="64MB") == 0 and out.read_text().startswith("run_id,")
