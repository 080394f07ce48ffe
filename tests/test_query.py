"""`rubric-judge query` is read-only: one SELECT, no writes, no file access."""

from __future__ import annotations

from pathlib import Path

import pytest

from rubric_judge.errors import UserError
from rubric_judge.store.db import connect
from rubric_judge.store.query import run_query


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "results.duckdb"
    connect(path).close()  # creates the schema and views
    return path


def test_select_with_semicolon_in_a_string_is_one_statement(db: Path):
    names, rows = run_query(db, "SELECT ';' AS s, count(*) AS n FROM runs")
    assert names == ["s", "n"] and rows == [(";", 0)]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE runs", "`DROP` is refused"),
        ("INSERT INTO runs SELECT * FROM runs", "`INSERT` is refused"),
        ("COPY runs TO 'x.csv'", "`COPY` is refused"),
        ("ATTACH 'other.duckdb'", "`ATTACH` is refused"),
        ("SELECT 1; DROP TABLE runs", "exactly one SQL statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("SELEC 1", "SQL error"),
    ],
)
def test_refused(db: Path, sql: str, message: str):
    with pytest.raises(UserError) as caught:
        run_query(db, sql)
    assert message in str(caught.value)
    assert run_query(db, "SELECT count(*) FROM runs")[1] == [(0,)]


def test_missing_database_is_a_clear_error(tmp_path: Path):
    with pytest.raises(UserError, match="does not exist"):
        run_query(tmp_path / "nope.duckdb", "SELECT 1")


def test_a_database_held_by_a_writer_is_a_clear_error_not_a_traceback(db: Path):
    import subprocess
    import sys

    # Another process (a running `score`, say) holds DuckDB's write lock on the file.
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for read_only in (True, False):
            with pytest.raises(UserError) as caught:
                connect(db, read_only=read_only)
            assert "in use by another process" in str(caught.value)
            assert caught.value.problems[0].fix == "wait for that process to finish, or pass another --db"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database")
    with pytest.raises(UserError, match=r"cannot open .* as a DuckDB database"):
        run_query(path, "SELECT 1")


def test_readers_update_an_older_results_database_but_never_a_foreign_one(tmp_path: Path):
    import duckdb

    old = tmp_path / "old.duckdb"
    connect(old).close()
    con = duckdb.connect(str(old))  # as an earlier version left it: no leaderboard_ci, no version stamp
    con.execute("DROP VIEW leaderboard_ci; DROP TABLE _store_version")
    con.close()
    assert run_query(old, "SELECT count(*) FROM leaderboard_ci") == (["count_star()"], [(0,)])

    foreign = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE notes AS SELECT 1 AS x")
    con.close()
    assert run_query(foreign, "SELECT x FROM notes")[1] == [(1,)]
    con = duckdb.connect(str(foreign), read_only=True)
    assert [name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()] == ["notes"]
    con.close()
