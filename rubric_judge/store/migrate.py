"""Numbered schema migrations for the results database (the way `llm` keeps its migrations).

The schema is the sum of the files in `migrations/`, applied in order: `0001_initial.sql` is
the first release's schema verbatim, and each later file alters what exists (new columns, new
tables). The number of the last migration applied is kept in `_migrations`, so any file
written by any version opens in this one: the missing steps run once, in one transaction each
(a new file: all of them in one).
Files written before migrations were recorded (they have `runs` but no `_migrations`) are
brought up by replaying every step after the first; each step is idempotent (`IF NOT EXISTS`)
for exactly that reason.

A file from a newer version (a migration number this version does not know) is refused, and a
DuckDB file that is not a rubric-judge database is never modified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.store.engine import duckdb_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str


@lru_cache(maxsize=1)
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with this version, in order (numbers 1, 2, 3, ... without gaps)."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text()))
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):  # a packaging mistake, not user input
        raise RuntimeError(f"schema migrations must be numbered 1..n without gaps, found {numbers}")
    return tuple(found)


def latest_version() -> int:
    return len(migrations())


def schema_version(con) -> int | None:
    """The migration number a database is at: 0 for an empty file, None for a file that holds
    tables but is not a rubric-judge database."""
    duckdb = duckdb_engine()

    try:  # the common case, 1 ms; listing the catalog's tables below takes about 25
        return int(con.execute("SELECT coalesce(max(number), 0) FROM main._migrations").fetchone()[0])
    except duckdb.CatalogException:
        pass
    tables = {row[0] for row in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'").fetchall()}
    if "_migrations" in tables:
        return int(con.execute("SELECT coalesce(max(number), 0) FROM _migrations").fetchone()[0])
    if "runs" in tables:
        return 1  # written before migrations were recorded: replay 2.. (idempotent)
    return 0 if not tables else None


def check_version(path: Path, version: int | None) -> None:
    """Refuse a file this version must not touch: not ours, or written by a newer version."""
    if version is None:
        raise UserError(Problem(Location(Path(path)), "this DuckDB file is not a rubric-judge results database (it has no `runs` table)",
                                fix="pass the results database with --db, or a new file name to start one; this file was not changed"))
    if version > latest_version():
        raise UserError(Problem(Location(Path(path)), f"written by a newer rubric-judge (schema version {version}; this version knows up to {latest_version()})",
                                fix="upgrade rubric-judge (pip install -U rubric-judge) to read it; the file was not changed"))


def migrate(con, path: Path) -> int:
    """Apply the migrations a database lacks; returns how many ran. Each runs in its own
    transaction with its bookkeeping row, so an interrupted upgrade resumes where it stopped."""
    version = schema_version(con)
    check_version(path, version)
    assert version is not None
    pending = migrations()[version:]
    # A new file has nothing to resume: every step in one transaction (one commit instead of
    # one per step, a tenth of a second of a first run), and an interrupted creation leaves the
    # file empty, to be created again on the next open.
    steps = [pending] if version == 0 else [[migration] for migration in pending]
    if version != 0:
        con.execute("CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    for step in steps:
        con.execute("BEGIN TRANSACTION")
        try:
            if version == 0:
                con.execute("CREATE TABLE _migrations (number INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
            for migration in step:
                con.execute(migration.sql)
                con.execute("INSERT OR REPLACE INTO _migrations VALUES (?, ?, current_timestamp::TIMESTAMP)", [migration.number, migration.name])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    if version == 1 and not con.execute("SELECT count(*) FROM _migrations WHERE number = 1").fetchone()[0]:
        con.execute("INSERT INTO _migrations VALUES (1, ?, current_timestamp::TIMESTAMP)", [migrations()[0].name])
    return len(pending)
