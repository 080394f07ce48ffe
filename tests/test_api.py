"""The public Python API: the README's snippet inside a running event loop, as in a notebook cell,
gives the leaderboard the CLI's `query` gives; imports stay light; events and errors."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rubric_judge as rj

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"
CLI = str(Path(sys.executable).with_name("rubric-judge"))


def readme_snippet() -> str:
    """The first Python block of the README's "Python API" section."""
    section = (ROOT / "README.md").read_text().split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readme_snippet_runs_inside_a_running_event_loop_and_matches_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the snippet's relative paths, from a scratch folder
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}

    async def notebook_cell() -> None:
        asyncio.get_running_loop()  # as in Jupyter: a loop is running while the cell executes
        exec(readme_snippet(), namespace)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        asyncio.run(notebook_cell())
    run, board = namespace["run"], namespace["board"]
    assert run.status == "finished" and run.calls == 18 and run.failed_calls == 0
    assert printed.getvalue().startswith("finished 18 0 0.0\n")  # what the README's comment says

    done = subprocess.run([CLI, "query", "SELECT * FROM leaderboard", "--format", "json", "--db", str(tmp_path / "api-demo.duckdb")],
                          capture_output=True, text=True, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}, timeout=120)
    assert done.returncode == 0, done.stderr
    from_cli = {(row["run_id"], row["dimension"]): row for row in json.loads(done.stdout)}
    from_api = {(row["run_id"], row["dimension"]): row for row in board.to_dict("records")}
    assert from_api.keys() == from_cli.keys() and len(from_api) == 4
    for key, row in from_cli.items():
        assert from_api[key]["score"] == pytest.approx(row["score"], abs=1e-12)
        assert from_api[key]["samples_scored"] == row["samples_scored"] == 6
        assert from_api[key]["samples_total"] == row["samples_total"] == 6
        assert from_api[key]["status"] == row["status"] == "finished"


def test_score_async_reports_progress_events_in_order(tmp_path: Path):
    events: list = []
    run = asyncio.run(rj.score_async(EXAMPLE / "tasks", data=EXAMPLE / "manifest.jsonl", outputs=EXAMPLE / "outputs" / "good-model",
                                     model="m", judge="offline", db=tmp_path / "r.duckdb", cache_dir=tmp_path / "cache", on_progress=events.append))
    kinds = [type(e).__name__ for e in events]
    # Planning streams into judging: a first Planned as judging starts, the complete one once every sample is planned.
    assert kinds[0] == "JudgeChosen" and kinds[1] == "Planned" and not events[1].complete
    assert set(kinds[2:]) == {"CallsProgress", "Planned"} and kinds.count("Planned") == 2
    complete = [e for e in events if type(e).__name__ == "Planned" and e.complete]
    assert len(complete) == 1 and complete[0].calls == 18 and complete[0].cached == 0 and complete[0].samples == 6
    calls = [e for e in events if type(e).__name__ == "CallsProgress"]
    assert calls[-1].done == calls[-1].total == 18
    assert (run.calls, run.cache_hits, run.exit_code) == (18, 0, 0)
    again = rj.score(EXAMPLE / "tasks", data=EXAMPLE / "manifest.jsonl", outputs=EXAMPLE / "outputs" / "good-model",
                     model="m", judge="offline", db=tmp_path / "r.duckdb", cache_dir=tmp_path / "cache")
    assert (again.calls, again.cache_hits, again.run_id) == (18, 18, run.run_id)
    assert again.results().runs()["status"].tolist() == ["finished"]


def test_bad_input_raises_a_user_error_that_names_the_field(tmp_path: Path):
    with pytest.raises(rj.UserError) as raised:
        rj.score(EXAMPLE / "tasks", data=EXAMPLE / "manifest.jsonl", outputs=EXAMPLE / "outputs" / "good-model", model="m",
                 judge="offline", db=tmp_path / "r.duckdb", cache="sometimes")
    assert raised.value.problems[0].field == "cache" and "read-write" in raised.value.problems[0].message
    with pytest.raises(rj.UserError) as raised:
        rj.load_rubric(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(raised.value)


def test_plan_counts_calls_per_mode_and_reads_the_cache(tmp_path: Path):
    plan = rj.plan(EXAMPLE / "tasks", data=EXAMPLE / "manifest.jsonl", outputs=EXAMPLE / "outputs" / "good-model",
                   judge="openai/gpt-4o", cache_dir=tmp_path / "cache")
    modes = {m.mode: m for m in plan.modes}
    assert (modes["per_criterion"].calls, modes["per_dimension"].calls, modes["per_sample"].calls) == (31, 18, 6)
    assert plan.configured.mode == "per_dimension" and plan.configured.cached_calls == 0
    assert plan.configured.cost_usd is not None and plan.configured.to_pay_cost_usd == plan.configured.cost_usd


def test_importing_the_package_loads_no_heavy_library():
    code = "import sys, rubric_judge as rj; rj.UserError; print([m for m in ('litellm', 'duckdb', 'torch', 'PIL', 'pandas') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
    assert set(rj.__all__) == set(rj._EXPORTS)
