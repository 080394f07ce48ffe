"""Jobs start at once: a metrics-only rubric runs no judge, a fully cached re-run loads no judge
stack, the direct transport never imports litellm, and planning streams into judging.

The import checks run `score` in a fresh interpreter (this test process has imported
everything already) and print which heavy modules it loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from rubric_judge.errors import UserError
from rubric_judge.rubrics.loader import load_rubric_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"

METRICS_ONLY = """\
rubric: lab/pixels
inputs:
  reference_image: image
  generated_image: image
outputs: [generated_image]
metrics:
  - {metric: psnr, output: generated_image, reference: reference_image}
"""

_SCORE_AND_REPORT_MODULES = r"""
import json, sys
from rubric_judge.run import score
result = score(sys.argv[1], data=sys.argv[2], outputs=sys.argv[3], model="m", db=sys.argv[4], cache_dir=sys.argv[5],
               **json.loads(sys.argv[6]))
heavy = sorted(m for m in ("litellm", "instructor", "openai", "torch", "aiohttp", "duckdb") if m in sys.modules)
print(json.dumps({"status": result.status, "calls": result.calls, "hits": result.cache_hits, "judge": result.judge_model, "heavy": heavy}))
"""


def _score_in_fresh_process(rubric: Path, outputs: Path, tmp: Path, **options) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _SCORE_AND_REPORT_MODULES, str(rubric), str(EXAMPLE / "manifest.jsonl"), str(outputs),
         str(tmp / "runs.duckdb"), str(tmp / "cache"), json.dumps(options)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _metrics_only_rubric(tmp: Path) -> Path:
    path = tmp / "pixels.yaml"
    path.write_text(METRICS_ONLY, encoding="utf-8")
    return path


def test_a_metrics_only_rubric_is_valid_and_scores_without_a_judge(tmp_path: Path):
    rubric = _metrics_only_rubric(tmp_path)
    assert load_rubric_file(rubric).judged is False
    ran = _score_in_fresh_process(rubric, EXAMPLE / "outputs" / "good-model", tmp_path)
    assert ran["status"] == "finished" and ran["calls"] == 0 and ran["judge"] == "none"
    assert "litellm" not in ran["heavy"] and "instructor" not in ran["heavy"] and "aiohttp" not in ran["heavy"]
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM judge_calls").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 6
        summary = con.execute("SELECT * FROM metric_summary").fetchall()
        assert summary, "metric_summary is empty"
        con.execute("SELECT * FROM leaderboard").fetchall()  # still answers (no judge rows)
    finally:
        con.close()


@pytest.mark.parametrize("missing", ["prompt", "scoring"])
def test_a_half_written_judge_part_is_an_error_not_a_metrics_only_rubric(tmp_path: Path, missing: str):
    lines = METRICS_ONLY + textwrap.dedent("""\
        dimensions: [{id: accuracy}]
        criteria: [{id: a-1, dimension: accuracy, text: "Shows the heart."}]
        prompt: "Judge {{ generated_image }}."
        scoring: {method: weighted_points}
        """)
    kept = "\n".join(line for line in lines.splitlines() if not line.startswith(missing + ":"))
    path = tmp_path / "half.yaml"
    path.write_text(kept + "\n", encoding="utf-8")
    with pytest.raises(UserError) as raised:
        load_rubric_file(path)
    assert any(p.field == missing or (p.field or "").startswith(missing) for p in raised.value.problems), raised.value.problems


def test_a_rubric_with_neither_a_judge_nor_metrics_is_refused(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("rubric: lab/nothing\ninputs: {generated_image: image}\n", encoding="utf-8")
    with pytest.raises(UserError) as raised:
        load_rubric_file(path)
    assert "neither a judge part" in str(raised.value)


def test_the_direct_transport_never_imports_litellm_and_a_cached_rerun_loads_no_judge_stack(tmp_path: Path, judge_server):
    options = {"judge": "openai/judge", "api_base": judge_server.base_url, "transport": "direct", "concurrency": 4}
    first = _score_in_fresh_process(EXAMPLE / "tasks", EXAMPLE / "outputs" / "good-model", tmp_path, **options)
    assert first["status"] == "finished" and first["calls"] == 18 and first["hits"] == 0
    assert "litellm" not in first["heavy"] and "torch" not in first["heavy"]
    requests = judge_server.request_count
    again = _score_in_fresh_process(EXAMPLE / "tasks", EXAMPLE / "outputs" / "good-model", tmp_path, **options)
    assert again["hits"] == 18 and judge_server.request_count == requests
    assert not {"litellm", "instructor", "openai", "aiohttp", "torch"} & set(again["heavy"]), again["heavy"]
    if importlib.util.find_spec("_duckdb") is not None:  # DuckDB 2: the engine without the package's relation layer
        assert "duckdb" not in again["heavy"] and "duckdb" not in first["heavy"]
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)  # the package reads what the engine wrote
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] >= 1
        assert con.execute("SELECT count(*) FROM judge_calls").fetchone()[0] == 18
    finally:
        con.close()


_PLUGIN_SCAN = r"""
import sys
import pydantic.plugin._loader as loader
scans = []
real = loader.entry_points
loader.entry_points = lambda **kwargs: scans.append(kwargs) or real(**kwargs)
from rubric_judge.cli.app import main
sys.argv = ["rubric-judge", "validate", sys.argv[1]]
try:
    main()
except SystemExit as exc:
    assert exc.code == 0, exc.code
print("scanned" if scans else "not scanned")
"""


@pytest.mark.parametrize(("setting", "expected"), [(None, "not scanned"), ("", "scanned")])
def test_the_cli_skips_pydantics_plugin_scan_unless_the_user_set_the_variable(setting: str | None, expected: str):
    env = {key: value for key, value in os.environ.items() if key != "PYDANTIC_DISABLE_PLUGINS"}
    if setting is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = setting
    done = subprocess.run([sys.executable, "-c", _PLUGIN_SCAN, str(EXAMPLE / "tasks")], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == expected


_SCORE_AND_REPORT_GC_STATE = r"""
import gc, sys
from rubric_judge.cli.app import main
sys.argv = ["rubric-judge", "score", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    assert exc.code == 0, exc.code
print(gc.isenabled(), gc.get_freeze_count())
"""


def test_score_freezes_what_its_imports_built_and_collects_garbage_as_usual_afterwards(tmp_path: Path, judge_server):
    # The direct transport: litellm's own import (the offline judge's path) freezes everything too.
    done = subprocess.run(
        [sys.executable, "-c", _SCORE_AND_REPORT_GC_STATE, str(EXAMPLE / "tasks"), "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs",
         str(EXAMPLE / "outputs" / "good-model"), "--model", "m", "--judge", "openai/judge", "--api-base", judge_server.base_url,
         "--transport", "direct", "--db", str(tmp_path / "runs.duckdb"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr
    enabled, frozen = done.stdout.strip().splitlines()[-1].split()
    assert enabled == "True"
    assert int(frozen) > 50_000  # the pipeline's modules, classes and schemas: walked by no collection


def test_the_schema_in_the_cache_key_is_the_one_instructor_is_given():
    from rubric_judge.planning.response import response_model, response_schema
    from rubric_judge.rubrics.schema import VerdictSpec

    # response_schema is written out by hand (no pydantic model per call); it must be exactly
    # the schema of instructor's model, key order included: its JSON is part of the cache key.
    criterion_sets = [
        (("a-1", "The heart has four chambers."), ("b-2", "No extra vessels.")),
        (("z", ""),),
        (("criterion_0", "Quotes \" and unicode: µm, 心臓"), ("x.y", "{{ not a template }}"), ("A B", "Spaces in the id.")),
    ]
    verdicts = (VerdictSpec(kind="binary"), VerdictSpec(kind="scale", min=1, max=10), VerdictSpec(kind="scale", min=0, max=4),
                VerdictSpec(kind="scale", min=-2, max=2))
    for criteria in criterion_sets:
        for verdict in verdicts:
            written = json.dumps(response_schema(criteria, verdict))
            assert written == json.dumps(response_model(criteria, verdict).model_json_schema(by_alias=True)), (criteria, verdict)


def test_prices_read_without_litellm_match_litellms_own():
    import rubric_judge.planning.estimate as estimate
    from rubric_judge.llm import litellm_module

    litellm_module()
    for model in ("openai/gpt-4.1", "gpt-4o-mini", "anthropic/claude-3-5-sonnet-20240620", "hosted_vllm/Qwen/Qwen2-VL-7B", "openai/bench-judge"):
        assert estimate._rates(model, False) == estimate._rates(model, True), model


def test_the_command_list_is_the_same_without_importing_the_commands():
    from typer.testing import CliRunner

    from rubric_judge.cli.app import build_app, listing_app

    runner = CliRunner()
    listed = runner.invoke(listing_app(), ["--help"], terminal_width=200)
    built = runner.invoke(build_app(), ["--help"], terminal_width=200)
    assert listed.exit_code == built.exit_code == 0
    assert listed.output == built.output
    # And `rubric-judge --help` in a fresh interpreter imports no command module.
    code = ("import sys; sys.argv = ['rubric-judge', '--help']\n"
            "from rubric_judge.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('rubric_judge.cli.') and m != 'rubric_judge.cli.app'), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Judge model outputs against a rubric" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("code, status, stderr", [(None, 0, ""), (3, 3, ""), ("bad input", 1, "bad input\n")])
def test_the_executable_ends_at_once_after_its_exit_handlers_and_with_its_output_whole(code, status: int, stderr: str):
    """`end_process` skips the interpreter's teardown, but not what must happen on the way out:
    atexit handlers run, buffered output is flushed, and the status is the one SystemExit gives."""
    program = textwrap.dedent(f"""
        import atexit, sys
        from rubric_judge.cli.app import end_process
        atexit.register(lambda: print("handler ran"))
        sys.stdout.write("buffered " * 1000)  # not yet flushed when the process ends
        end_process({code!r})
        print("never reached")
    """)
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert run.returncode == status
    assert run.stdout == "buffered " * 1000 + "handler ran\n"
    assert run.stderr == stderr


def test_the_executable_exits_the_ordinary_way_while_another_thread_still_works():
    program = textwrap.dedent("""
        import threading, time
        from rubric_judge.cli.app import end_process
        def work():
            time.sleep(0.3)
            print("the thread finished", flush=True)
        threading.Thread(target=work).start()
        end_process(4)
    """)
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (4, "the thread finished\n")


def test_a_daemon_thread_still_alive_does_not_send_the_executable_through_the_teardown():
    # rich's progress refresher is such a thread: `stop()` signals it and returns. The teardown
    # would finalize the module's object (its __del__ prints); the quick end does not.
    program = textwrap.dedent("""
        import atexit, threading
        from rubric_judge.cli.app import end_process
        class Finalized:
            def __del__(self):
                print("torn down", flush=True)
        kept = Finalized()
        atexit.register(lambda: print("handler ran", flush=True))
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        end_process(5)
    """)
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (5, "handler ran\n")


def test_a_profiled_executable_exits_the_ordinary_way_so_the_profile_is_written(tmp_path: Path):
    profile = tmp_path / "help.prof"
    script = Path(sys.executable).with_name("rubric-judge")
    run = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "Usage" in run.stdout
    assert profile.stat().st_size > 0
