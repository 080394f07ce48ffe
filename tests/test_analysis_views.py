"""Analysis: the verdicts_full view with a sign-aware `failed`, paid cost (cache hits cost 0),
query output formats (JSON nested, JSON arrays in CSV, values as returned), `export --sql`,
`leaderboard --format` and Parquet that pandas reads. Real DuckDB files; scoring goes through
the loopback judge over HTTP."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from rubric_judge.planning.estimate import register_price
from rubric_judge.run import score

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
MANIFEST = EXAMPLE / "manifest.jsonl"
GOOD = EXAMPLE / "outputs" / "good-model"
CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]
# A judge with a price of its own, so that what was paid is not zero.
PRICED_JUDGE = "openai/priced-test-judge"
PROMPT_USD, COMPLETION_USD = 3e-6, 11e-6


def rows(db: Path, sql: str, params: list[Any] | tuple = ()) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def run_score(server, tmp: Path, tasks: Path, on_progress=None):
    result = score(rubric=tasks, data=MANIFEST, outputs=GOOD, model="good-model", judge=PRICED_JUDGE, api_base=server.base_url,
                   db=tmp / "r.duckdb", cache_dir=tmp / "cache", concurrency=4, timeout=10.0, on_progress=on_progress)
    assert result.exit_code == 0, result.status_detail
    return result


@pytest.fixture(scope="module")
def scored(module_judge_server, tmp_path_factory) -> Path:
    """good-model scored once through the loopback judge (id_policy: the pitfall
    scientific_accuracy-2 and every `*-1` criterion are met)."""
    tmp = tmp_path_factory.mktemp("analysis")
    register_price(PRICED_JUDGE, PROMPT_USD, COMPLETION_USD)
    run_score(module_judge_server, tmp, EXAMPLE / "tasks")
    return tmp / "r.duckdb"


def test_sum_of_cost_over_judge_calls_is_what_the_cli_summary_says_was_paid(judge_server, tmp_path: Path, capsys) -> None:
    from rubric_judge.cli.score import print_summary

    register_price(PRICED_JUDGE, PROMPT_USD, COMPLETION_USD)
    db = tmp_path / "r.duckdb"
    first = run_score(judge_server, tmp_path, EXAMPLE / "tasks")
    assert first.cache_hits == 0 and first.cost_usd > 0
    # Unchanged: every call a cache hit, nothing paid.
    cached = run_score(judge_server, tmp_path, EXAMPLE / "tasks")
    assert cached.cache_hits == cached.calls == 18
    assert rows(db, "SELECT sum(cost_usd), sum(prompt_tokens), sum(completion_tokens) FROM judge_calls") == [(0.0, 0, 0)]
    # What the answers cost when they were paid for is kept in its own columns.
    (original,) = rows(db, "SELECT sum(original_cost_usd) FROM judge_calls")[0]
    assert original == pytest.approx(first.cost_usd, rel=1e-9)

    # One criterion edited: one paid call, 17 cache hits.
    tasks = tmp_path / "tasks"
    shutil.copytree(EXAMPLE / "tasks", tasks)
    doc = yaml.safe_load((tasks / "heart-chambers.yaml").read_text())
    doc["criteria"][0]["text"] += " (edited)"
    (tasks / "heart-chambers.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    capsys.readouterr()
    mixed = run_score(judge_server, tmp_path, tasks)
    print_summary(mixed)
    summary = capsys.readouterr().out
    assert (mixed.calls, mixed.cache_hits) == (18, 17) and mixed.cost_usd > 0
    paid, prompt, completion = rows(db, "SELECT sum(cost_usd), sum(prompt_tokens), sum(completion_tokens) FROM judge_calls WHERE run_id = ?",
                                    [mixed.run_id])[0]
    assert paid == pytest.approx(mixed.cost_usd, rel=1e-12) and (prompt, completion) == (mixed.prompt_tokens, mixed.completion_tokens)
    assert f"{prompt:,} prompt + {completion:,} completion tokens paid, ${paid:.4f}" in summary
    assert rows(db, "SELECT count(*) FROM judge_calls WHERE run_id = ? AND cache_hit AND (cost_usd <> 0 OR original_cost_usd <= 0)",
                [mixed.run_id]) == [(0,)]
    # The run_summary view (`rubric-judge runs`) reports the same spend.
    assert rows(db, "SELECT paid_usd FROM run_summary WHERE run_id = ?", [mixed.run_id])[0][0] == pytest.approx(mixed.cost_usd, rel=1e-12)


def test_migration_moves_the_cost_of_stored_cache_hits_to_the_original_columns(scored: Path, tmp_path: Path) -> None:
    from rubric_judge.store.db import connect

    db = tmp_path / "old.duckdb"
    shutil.copy(scored, db)
    con = duckdb.connect(str(db))
    # As an older version wrote it: a cache hit with its original price as cost_usd, no original_* columns.
    con.execute("UPDATE judge_calls SET cache_hit = true WHERE call_id IN (SELECT call_id FROM judge_calls ORDER BY call_id LIMIT 5)")
    con.execute("UPDATE judge_calls SET original_prompt_tokens = NULL, original_completion_tokens = NULL, original_cost_usd = NULL")
    before = dict(con.execute("SELECT call_id, cost_usd FROM judge_calls").fetchall())
    con.execute("DELETE FROM _migrations WHERE number >= 7")
    con.close()
    connect(db).close()
    after = {call: (cost, original, hit) for call, cost, original, hit in rows(db, "SELECT call_id, cost_usd, original_cost_usd, cache_hit FROM judge_calls")}
    assert all(original == before[call] and cost == (0.0 if hit else before[call]) for call, (cost, original, hit) in after.items())
    assert sum(hit for _, _, hit in after.values()) == 5


def test_verdicts_full_joins_texts_and_says_which_criteria_failed_sign_aware(scored: Path) -> None:
    found = {(r[0], r[1]): r[2:] for r in rows(scored, "SELECT sample_id, criterion_id, weight, met, failed, criterion_text, model_name, rubric_id, "
                                                        "judge_model, dimension_name, tags FROM verdicts_full WHERE status = 'ok'")}
    weight, met, failed, text, model, rubric, judge, dimension_name, tags = found[("heart-chambers", "scientific_accuracy-2")]
    assert weight < 0 and met is True and failed is True  # a pitfall that is present has failed
    assert text == "The aorta leaves the right ventricle." and (model, rubric, judge) == ("good-model", "illugenbench", PRICED_JUDGE)
    assert dimension_name == "Scientific accuracy" and tags == []  # the example criteria have no tags
    _, met, failed, *_ = found[("heart-chambers", "scientific_accuracy-1")]
    assert met is True and failed is False
    _, met, failed, *_ = found[("heart-chambers", "structural_correctness-2")]
    assert met is False and failed is True
    assert all(f == ((not m) if w >= 0 else m) for w, m, f, *_ in found.values())
    assert rows(scored, "SELECT count(*) FROM verdicts_full") == rows(scored, "SELECT count(*) FROM verdicts")
    # missing outputs and other non-binary verdicts have no `failed`
    assert rows(scored, "SELECT count(*) FROM verdicts_full WHERE status <> 'ok' AND failed IS NOT NULL") == [(0,)]


def test_query_json_nests_json_columns_and_csv_holds_json_arrays(scored: Path) -> None:
    sql = ("SELECT call_id, response, ['response', 'x'] AS names, {'a': 1} AS s, 0.1::DOUBLE + 0.2::DOUBLE AS x, true AS b, 1.25 AS d "
           "FROM judge_calls ORDER BY call_id LIMIT 1")
    as_json = cli("query", sql, "--db", str(scored), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    (row,) = json.loads(as_json.stdout)
    assert isinstance(row["response"], dict) and row["response"]  # nested, not a string holding JSON
    assert row["names"] == ["response", "x"] and row["s"] == {"a": 1} and row["x"] == 0.1 + 0.2 and row["b"] is True
    assert row["d"] == 1.25  # a DECIMAL is a number, not the text "1.25"

    as_csv = cli("query", sql, "--db", str(scored), "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    (record,) = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert record["names"] == '["response", "x"]' and json.loads(record["s"]) == {"a": 1}
    assert isinstance(json.loads(record["response"]), dict)

    table = cli("query", "SELECT 0.1::DOUBLE + 0.2::DOUBLE AS x, round(1 / 3, 2) AS z, ['a'] AS l", "--db", str(scored))
    assert table.returncode == 0, table.stderr
    assert "0.30000000000000004" in table.stdout and "0.33" in table.stdout and "0.3300" not in table.stdout and '["a"]' in table.stdout


def test_export_sql_writes_parquet_that_pandas_reads(scored: Path, tmp_path: Path) -> None:
    import pandas

    out = tmp_path / "failed.parquet"
    done = cli("export", "--sql", "SELECT * FROM verdicts_full WHERE failed -- pitfalls met, criteria missed\n;", "--out", str(out), "--db", str(scored))
    assert done.returncode == 0, done.stderr
    expected = rows(scored, "SELECT count(*) FROM verdicts_full WHERE failed")[0][0]
    assert f"wrote {expected} rows of the query" in done.stdout
    frame = pandas.read_parquet(out)
    assert len(frame) == expected > 0 and frame["failed"].all() and "criterion_text" in frame.columns

    table = tmp_path / "verdicts.parquet"
    assert cli("export", "--table", "verdicts_full", "--out", str(table), "--db", str(scored)).returncode == 0
    assert len(pandas.read_parquet(table)) == rows(scored, "SELECT count(*) FROM verdicts")[0][0]

    as_json = tmp_path / "calls.json"
    assert cli("export", "--sql", "SELECT call_id, response FROM judge_calls", "--out", str(as_json), "--db", str(scored)).returncode == 0
    assert all(isinstance(r["response"], dict) for r in json.loads(as_json.read_text()))


@pytest.mark.parametrize(("args", "message"), [
    (["--sql", "DROP TABLE runs"], "`DROP` is refused"),
    (["--sql", "SELECT 1; SELECT 2"], "exactly one SQL statement"),
    (["--sql", "SELECT * FROM read_csv('/etc/passwd')"], "file system operations are disabled"),
    (["--sql", "SELECT 1) TO '/tmp/elsewhere.csv' (FORMAT csv) --"], "SQL error"),
    (["--sql", "SELECT 1", "--table", "runs"], "give either --table or --sql"),
    ([], "give either --table or --sql"),
])
def test_export_sql_refuses_anything_but_one_select_on_the_database(scored: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out.csv"
    done = cli("export", *args, "--out", str(out), "--db", str(scored))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    assert rows(scored, "SELECT count(*) FROM runs") == [(1,)]


def test_leaderboard_formats(scored: Path) -> None:
    as_json = cli("leaderboard", "--db", str(scored), "--format", "json", "--resamples", "50")
    assert as_json.returncode == 0, as_json.stderr
    board = json.loads(as_json.stdout)
    assert {r["dimension"] for r in board} == {"overall", "scientific_accuracy", "structural_correctness", "semantic_alignment"}
    assert all(r["model_name"] == "good-model" and r["samples_total"] == 6 and "ci_low" in r for r in board)
    as_csv = cli("leaderboard", "--db", str(scored), "--format", "csv", "--resamples", "50")
    records = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["dimension"] for r in records] == [r["dimension"] for r in board] and float(records[0]["score"]) == board[0]["score"]
    refused = cli("leaderboard", "--db", str(scored), "--format", "xml")
    assert refused.returncode == 2 and "--format must be table, csv or json" in refused.stderr
