"""Results files from other versions: the first release's file opens in every command with its
data intact, a newer file and a foreign DuckDB file are refused and left unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from rubric_judge.store.migrate import latest_version

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"
FIXTURE = Path(__file__).with_name("fixtures") / "results_v0.1"
CLI = str(Path(sys.executable).with_name("rubric-judge"))
# What the first release's own leaderboard view said for these runs (fixtures/results_v0.1/README.md).
RECORDED_OVERALL = {"good-model": 0.8321953781512604, "weak-model": 0.4740896358543418}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "200"}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def _first_release_database(path: Path) -> Path:
    """The fixture imported into a new DuckDB file with DuckDB alone, as the old version left it."""
    con = duckdb.connect(str(path))
    con.execute((FIXTURE / "schema.sql").read_text())
    con.execute((FIXTURE / "load.sql").read_text().replace("{dir}", str(FIXTURE)))
    con.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_first_release_database_opens_in_every_command_with_its_data_intact(tmp_path: Path):
    db = _first_release_database(tmp_path / "old.duckdb")
    con = duckdb.connect(str(db), read_only=True)
    assert "unscored_policy" not in [row[0] for row in con.execute("DESCRIBE runs").fetchall()]  # truly the old schema
    con.close()

    board = _cli("leaderboard", "--db", str(db))
    assert board.returncode == 0, board.stderr
    assert "Traceback" not in board.stderr
    assert "0.8322" in board.stdout and "0.4741" in board.stdout

    query = _cli("query", "SELECT model_name, score FROM leaderboard WHERE dimension = 'overall' ORDER BY 1", "--db", str(db), "--format", "json")
    assert query.returncode == 0, query.stderr
    assert {row["model_name"]: row["score"] for row in json.loads(query.stdout)} == pytest.approx(RECORDED_OVERALL, abs=1e-12)

    report = _cli("report", "--db", str(db), "--out", str(tmp_path / "report.html"), "--cache-dir", str(tmp_path / "cache"))
    assert report.returncode == 0, report.stderr
    assert "good-model" in (tmp_path / "report.html").read_text()

    compare = _cli("compare", "good-model", "weak-model", "--db", str(db))
    assert compare.returncode == 0, compare.stderr

    score = _cli("score", str(EXAMPLE / "tasks"), "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs", str(EXAMPLE / "outputs" / "good-model"),
                 "--model", "new-model", "--judge", "offline", "--db", str(db), "--cache-dir", str(tmp_path / "cache"))
    assert score.returncode == 0, score.stderr

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT max(number) FROM _migrations").fetchone()[0] == latest_version()
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 3
    old = "run_id IN (SELECT run_id FROM runs WHERE model_name <> 'new-model')"
    assert con.execute(f"SELECT count(*) FROM verdicts WHERE {old}").fetchone()[0] == 62
    assert con.execute(f"SELECT count(*) FROM judge_calls WHERE {old}").fetchone()[0] == 33
    assert con.execute(f"SELECT DISTINCT unscored_policy FROM runs WHERE {old}").fetchall() == [("exclude",)]
    rows = con.execute("SELECT model_name, score FROM leaderboard WHERE dimension = 'overall'").fetchall()
    con.close()
    # The new run, of the same outputs as good-model with the same offline judge, agrees with the old one.
    assert dict(rows) == pytest.approx({**RECORDED_OVERALL, "new-model": RECORDED_OVERALL["good-model"]}, abs=1e-12)


def test_a_database_from_a_newer_version_is_refused_and_left_unchanged(tmp_path: Path):
    db = _first_release_database(tmp_path / "newer.duckdb")
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE _migrations (number INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    con.execute("INSERT INTO _migrations VALUES (?, 'from_the_future', now()::TIMESTAMP)", [latest_version() + 1])
    con.close()
    before = _digest(db)
    for args in (["leaderboard"], ["query", "SELECT 1"], ["report", "--out", str(tmp_path / "r.html")]):
        done = _cli(*args, "--db", str(db))
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "newer rubric-judge" in done.stderr and "Traceback" not in done.stderr
    assert _digest(db) == before


def test_score_never_writes_into_a_duckdb_file_that_is_not_a_results_database(tmp_path: Path):
    foreign = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE notes AS SELECT 1 AS x")
    con.close()
    before = _digest(foreign)
    done = _cli("score", str(EXAMPLE / "tasks"), "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs", str(EXAMPLE / "outputs" / "good-model"),
                "--model", "m", "--judge", "offline", "--db", str(foreign), "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 2, done.stderr
    assert "not a rubric-judge results database" in done.stderr and "Traceback" not in done.stderr
    assert _digest(foreign) == before


_ENGINE_CHOICE = r"""
import sys
if sys.argv[1] == "package-loaded":
    import duckdb
from pathlib import Path
from rubric_judge.store.db import ResultStore, connect
from rubric_judge.store.engine import duckdb_engine
engine = duckdb_engine()
ResultStore(Path(sys.argv[2])).close()
con = connect(Path(sys.argv[2]), read_only=True)
tables = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'").fetchone()[0]
print(engine.__name__, "duckdb" in sys.modules, tables)
"""


@pytest.mark.parametrize(("case", "expected"), [
    ("package-loaded", "duckdb True 1"),  # the package a caller already imported
    ("plain", "_duckdb False 1" if sys.modules.get("_duckdb") is not None else "duckdb True 1"),  # DuckDB 2: the engine alone
])
def test_the_store_connects_through_the_engine_module_or_the_package(tmp_path: Path, case: str, expected: str):
    done = subprocess.run([sys.executable, "-c", _ENGINE_CHOICE, case, str(tmp_path / f"{case}.duckdb")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
