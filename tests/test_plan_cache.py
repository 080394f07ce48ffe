"""`plan`: cached vs to-pay calls from the verdict cache, a batching mode the templates cannot
use explained instead of zeros, and the metric work with the weights it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rubric_judge as rj
from rubric_judge.metrics.weights import lpips_trunk_path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
TASKS, MANIFEST, GOOD = EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model"
MEDGEN = EXAMPLE.parent / "medgen"
JUDGE = "openai/gpt-4o"  # a judge with a price, so to-pay costs are numbers
CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]

PER_DIMENSION_ONLY = """\
rubric: demo/summary
judge: {model: openai/gpt-4o, mode: per_dimension}
inputs: {report: text, summary: text}
outputs: [summary]
dimensions: [{id: accuracy}, {id: style}]
criteria:
  - {id: acc-1, dimension: accuracy, weight: 2, text: "States the main finding."}
  - {id: sty-1, dimension: style, weight: 1, text: "Is one sentence."}
prompt: |
  Judge the summary on {{ dimension.name }}: {{ summary }}
  {% for c in criteria %}{{ c.number }}. [{{ c.id }}] {{ c.text }}
  {% endfor %}
scoring: {method: weighted_points}
"""


def test_plan_counts_calls_a_run_cached_and_prices_only_the_rest(judge_server, tmp_path: Path):
    cache = tmp_path / "cache"
    # Paid for two samples (6 calls) on a local server; `plan` must name the judge as `score` did.
    rj.score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge=JUDGE, api_base=judge_server.base_url, db=tmp_path / "r.duckdb",
             cache_dir=cache, limit=2)
    summary = rj.plan(TASKS, data=MANIFEST, outputs=GOOD, judge=JUDGE, api_base=judge_server.base_url, cache_dir=cache)
    mode = summary.configured
    assert (mode.calls, mode.cached_calls, mode.to_pay_calls) == (18, 6, 12)
    assert 0 < mode.to_pay_cost_usd < mode.cost_usd
    elsewhere = rj.plan(TASKS, data=MANIFEST, outputs=GOOD, judge=JUDGE, cache_dir=cache).configured  # another judge identity
    assert elsewhere.cached_calls == 0 and elsewhere.to_pay_cost_usd == elsewhere.cost_usd

    shown = subprocess.run([*CLI, "plan", str(TASKS), "--data", str(MANIFEST), "--outputs", str(GOOD), "--judge", JUDGE,
                            "--api-base", judge_server.base_url, "--cache-dir", str(cache)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "18 calls, 6 in the verdict cache (free), 12 to pay" in " ".join(shown.stdout.split())


def test_plan_finds_the_offline_judges_cached_calls(tmp_path: Path):
    cache = tmp_path / "cache"
    rj.score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge="offline", db=tmp_path / "r.duckdb", cache_dir=cache, samples=["lung-nodule"])
    mode = rj.plan(TASKS, data=MANIFEST, outputs=GOOD, judge="offline", cache_dir=cache).configured
    assert (mode.cached_calls, mode.to_pay_calls, mode.cost_usd) == (3, 15, 0.0)


def test_a_mode_the_template_cannot_use_is_explained_not_zero(tmp_path: Path):
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(PER_DIMENSION_ONLY)
    (tmp_path / "m.jsonl").write_text('{"id": "s1", "report": "r1"}\n{"id": "s2", "report": "r2"}\n')
    (tmp_path / "o.jsonl").write_text('{"id": "s1", "summary": "a"}\n{"id": "s2", "summary": "b"}\n')
    summary = rj.plan(rubric, data=tmp_path / "m.jsonl", outputs=tmp_path / "o.jsonl", cache_dir=tmp_path / "cache")
    modes = {m.mode: m for m in summary.modes}
    assert modes["per_sample"].calls == 0 and modes["per_sample"].unusable.startswith("fails for 2 of 2 samples")
    assert "'None' has no attribute 'name'" in modes["per_sample"].unusable
    assert modes["per_dimension"].unusable is None and modes["per_criterion"].unusable is None and not summary.warnings
    shown = subprocess.run([*CLI, "plan", str(rubric), "--data", str(tmp_path / "m.jsonl"), "--outputs", str(tmp_path / "o.jsonl"),
                            "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "per_sample" in line and "│" in line)
    assert "cannot be used" in row and "0.0000" not in row
    assert "per_sample cannot be used with this rubric's templates: fails for 2 of 2 samples" in " ".join(shown.stdout.split())


def test_plan_lists_metric_work_and_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no LPIPS trunk here
    data, outputs = MEDGEN / "manifest.jsonl", MEDGEN / "outputs" / "demo-model" / "outputs.jsonl"
    summary = rj.plan(MEDGEN / "rubric.yaml", data=data, outputs=outputs, cache_dir=tmp_path / "cache")
    work = {w.metric: w for w in summary.metrics}
    assert list(work) == ["ssim", "psnr", "lpips", "bertscore"]
    assert {(w.pairs, w.missing_outputs) for w in work.values()} == {(4, 0)}  # the 4 samples with a reference of each kind
    assert work["ssim"].weights == ()
    trunk = next(w for w in work["lpips"].weights if "trunk" in w.name)
    assert not trunk.present and "weights --download" in trunk.how_to_get
    path = lpips_trunk_path("alex")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")
    again = {w.metric: w for w in rj.plan(MEDGEN / "rubric.yaml", data=data, outputs=outputs, cache_dir=tmp_path / "cache").metrics}
    assert next(w for w in again["lpips"].weights if "trunk" in w.name).present
