"""MedGEN-Bench import: a synthetic release (hyphenated fields, all three formats, a missing image,
duplicates, responses in a separate file) becomes a dataset the MedGEN rubrics load and score,
and the results read back as the paper's Table 3."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from rubric_judge.benchmarks.medgen import import_medgen
from rubric_judge.errors import UserError
from rubric_judge.planning.job import load_job
from rubric_judge.rubrics.loader import LIBRARY
from rubric_judge.run import score
from rubric_judge.store.medgen_tables import table3


def _image(path: Path, seed: int, noise: bool = False) -> None:
    rng = np.random.default_rng(seed)
    if noise:
        pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    else:
        y, x = np.mgrid[0:48, 0:48]
        base = ((x * (3 + seed) + y * 2) % 256).astype(np.uint8)
        pixels = np.stack([base, base[::-1], base.T], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _record(category: str, **extra) -> dict:
    base = {"category": category, "sub-category": f"{category} sub", "paper_task": f"{category} task", "modality": "CT",
            "instruction": f"Do the {category} thing.", "input_image": "", "ground_truth_image": "", "answer": ""}
    return {**base, **extra}


@pytest.fixture()
def release(tmp_path: Path) -> dict[str, Path]:
    """A MedGEN-Bench-shaped release: records (JSON list), images/, a separate responses JSONL."""
    images = tmp_path / "release" / "images"
    for i, name in enumerate(["ct/a.png", "mri/b.png", "mri/b_gt.png", "path/c.png", "path/c_gt.png", "xr/d.png", "xr/d_gt.png"]):
        _image(images / name, i)
    _image(images / "model" / "d_out.png", 99, noise=True)  # the model's (poor) edit of d, named in the record
    (tmp_path / "release" / "secret.png").write_bytes((images / "ct/a.png").read_bytes())
    records = [
        _record("VQA", id="vqa-1", modality="CT", input_image="ct/a.png", answer="A left pleural effusion.", paper_task="Diagnostic VQA"),
        _record("ImageEdit", id="edit-1", modality="MRI", input_image="mri/b.png", ground_truth_image="mri/b_gt.png", paper_task="Lesion removal"),
        _record("MMGeneration", id="gen-1", modality="Pathology", input_image="path/c.png", ground_truth_image="path/c_gt.png",
                answer="Dense lymphocytic infiltrate.", paper_task="Report with annotation"),
        _record("ImageEdit", modality="X-Ray", input_image="xr/d.png", ground_truth_image="xr/d_gt.png", paper_task="Lesion removal",
                output_image="model/d_out.png"),  # no id: derived as 00003-d; its output is in the record
        _record("VQA", id="vqa-2", input_image="ct/missing.png", answer="x"),  # missing image file: imported without it
        _record("VQA", id="vqa-1", input_image="ct/a.png", answer="another"),  # duplicate id
        _record("MMGeneration", id="gen-1-copy", modality="Pathology", input_image="path/c.png", ground_truth_image="path/c_gt.png",
                answer="Dense lymphocytic infiltrate.", paper_task="Report with annotation"),  # duplicate content
        _record("Segmentation", id="seg-1", input_image="ct/a.png"),  # unknown category
        _record("VQA", id="vqa-3", input_image="ct/a.png", instruction=""),  # no instruction
        _record("VQA", id="vqa-4", input_image="../secret.png"),  # leaves the images directory
    ]
    records_path = tmp_path / "release" / "MedGEN-Bench.json"
    records_path.write_text(json.dumps(records, indent=1))
    model = tmp_path / "model-x"
    (model / "imgs").mkdir(parents=True)
    (model / "imgs" / "edit-1.png").write_bytes((images / "mri/b_gt.png").read_bytes())  # a perfect edit
    (model / "imgs" / "gen-1.png").write_bytes((images / "path/c_gt.png").read_bytes())
    responses = [
        {"id": "vqa-1", "response": "There is a left-sided pleural effusion."},
        {"id": "edit-1", "output_image": "imgs/edit-1.png"},
        {"id": "gen-1", "response": "Lymphocytes infiltrate the tissue.", "output_image": "imgs/gen-1.png"},
        {"id": "vqa-2", "response": "an answer without its image"},
        {"id": "ghost", "response": "no such record"},
    ]
    responses_path = model / "responses.jsonl"
    responses_path.write_text("".join(json.dumps(r) + "\n" for r in responses))
    return {"records": records_path, "images": images, "responses": responses_path, "out": tmp_path / "dataset"}


def _jsonl(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_release_imports_into_a_loadable_manifest(release: dict[str, Path]) -> None:
    result = import_medgen(release["records"], release["images"], release["out"], release["responses"])
    out = release["out"]
    assert (result.records, result.imported, result.invalid, result.duplicates) == (10, 5, 3, 2)
    assert result.by_category == {"VQA": 2, "ImageEdit": 2, "MMGeneration": 1}
    assert result.by_modality == {"CT": 2, "MRI": 1, "Pathology": 1, "X-Ray": 1}
    assert result.manifest == out / "manifest.jsonl" and result.outputs == out / "outputs.jsonl"
    assert result.written == (result.manifest, result.outputs)
    assert result.with_outputs == 5 and result.images == 10 and result.linked == 10  # 7 inputs/references + 3 output images
    messages = "\n".join(str(p) for p in result.problems)
    for expected in ("'vqa-2': image file not found: ct/missing.png; imported without it", "'vqa-1': duplicate id",
                     "'gen-1-copy': same content as 'gen-1'", "unknown category 'Segmentation'", "'vqa-3': no instruction",
                     "'vqa-4': image path leaves the images directory", "response for 'ghost' not imported: no record has this id"):
        assert expected in messages
    assert len(result.problems) == 7
    summary = result.summary()
    assert "5 of 10 records imported (3 invalid, 2 duplicates skipped)" in summary and "ImageEdit 2" in summary and "X-Ray 1" in summary

    manifest = _jsonl(out / "manifest.jsonl")
    assert list(manifest) == ["vqa-1", "edit-1", "gen-1", "00003-d", "vqa-2"]
    assert "input_image" not in manifest["vqa-2"] and manifest["vqa-2"]["answer"] == "x"
    assert manifest["vqa-1"] == {"id": "vqa-1", "category": "VQA", "sub_category": "VQA sub", "paper_task": "Diagnostic VQA", "modality": "CT",
                                 "instruction": "Do the VQA thing.", "answer": "A left pleural effusion.", "input_image": "images/ct/a.png"}
    assert "answer" not in manifest["edit-1"] and manifest["edit-1"]["ground_truth_image"] == "images/mri/b_gt.png"
    assert all("sub-category" not in r and "response" not in r and "output_image" not in r for r in manifest.values())
    outputs = _jsonl(out / "outputs.jsonl")
    assert outputs["vqa-1"] == {"id": "vqa-1", "response": "There is a left-sided pleural effusion."}
    assert outputs["edit-1"] == {"id": "edit-1", "output_image": "outputs/edit-1.png"}
    assert outputs["00003-d"] == {"id": "00003-d", "output_image": "outputs/00003-d.png"}
    assert (out / "outputs" / "00003-d.png").read_bytes() == (release["images"] / "model" / "d_out.png").read_bytes()
    assert not (out / "secret.png").exists() and not (out / "images" / "ct" / "missing.png").exists()

    job = load_job(LIBRARY / "medgen" / "holistic-with-gt.yaml", out / "manifest.jsonl", out / "outputs.jsonl")
    samples = {s.id: s for s in job.samples}
    assert set(samples) == set(manifest)
    assert all(not s.missing_outputs for s in samples.values())
    gen = samples["gen-1"].fields
    assert gen["category"] == "MMGeneration" and gen["paper_task"] == "Report with annotation"
    assert gen["ground_truth_image"] == (out / "images/path/c_gt.png").resolve() and gen["output_image"] == (out / "outputs/gen-1.png").resolve()
    assert gen["response"] == "Lymphocytes infiltrate the tissue."
    assert samples["vqa-1"].fields.get("ground_truth_image") is None and samples["edit-1"].fields.get("response") is None

    # Importing again into the same directory is a no-op for the images and gives the same files.
    before = (out / "manifest.jsonl").read_text(), (out / "outputs.jsonl").read_text()
    inodes = {p: p.stat().st_ino for p in out.rglob("*.png")}
    again = import_medgen(release["records"], release["images"], release["out"], release["responses"])
    assert ((out / "manifest.jsonl").read_text(), (out / "outputs.jsonl").read_text()) == before
    assert {p: p.stat().st_ino for p in out.rglob("*.png")} == inodes  # the existing links were kept, not redone
    assert again.linked == 10  # and are still reported as hard links


def test_jsonl_release_without_outputs_and_bad_inputs(tmp_path: Path) -> None:
    images = tmp_path / "images"
    _image(images / "a.png", 1)
    lines = [_record("vqa", input_image="a.png", answer="yes"), _record("VQA", input_image="a.png", answer="no", instruction="Other?")]
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    result = import_medgen(records, images, tmp_path / "out")
    assert result.imported == 2 and result.outputs is None and not (tmp_path / "out" / "outputs.jsonl").exists()
    assert list(_jsonl(result.manifest)) == ["00000-a", "00001-a"]
    assert _jsonl(result.manifest)["00000-a"]["category"] == "VQA"  # category spelling normalised
    assert "outputs: none" in result.summary()

    with pytest.raises(UserError, match="images directory not found"):
        import_medgen(records, tmp_path / "nope", tmp_path / "out")
    records.write_text(json.dumps([_record("Other", input_image="a.png")]))
    with pytest.raises(UserError, match="no valid record"):
        import_medgen(records, images, tmp_path / "out2")


def test_imported_release_scores_and_reads_back_as_table3(release: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch"))  # LPIPS weights absent: unavailable
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf"))  # PubMedBERT absent: BERTScore unavailable
    result = import_medgen(release["records"], release["images"], release["out"], release["responses"])
    db = tmp_path / "x.duckdb"
    run = score("builtin:medgen/holistic-with-gt.yaml", data=result.manifest, outputs=result.outputs, model="m",
                judge="offline", db=db, cache_dir=tmp_path / "cache", device="cpu")
    assert run.exit_code == 0

    with duckdb.connect(str(db), read_only=True) as con:
        metrics = {(s, m): (v, p, st) for s, m, v, p, st in con.execute("SELECT sample_id, metric, value, passed, status FROM metric_values").fetchall()}
        judged = dict(con.execute("SELECT sample_id, passed FROM task_scores").fetchall())
        verdicts = con.execute("SELECT count(*) FROM verdicts WHERE status = 'ok' AND criterion_id = 'overall'").fetchone()[0]
    assert verdicts == 5 and set(judged) == {"vqa-1", "edit-1", "gen-1", "00003-d", "vqa-2"}
    with_gt = {"edit-1", "gen-1", "00003-d"}
    assert {s for (s, m), v in metrics.items() if m == "ssim" and v[2] == "ok"} == with_gt
    assert {s for (s, m), v in metrics.items() if m == "psnr" and v[2] == "ok"} == with_gt
    assert metrics[("edit-1", "ssim")][:2] == (pytest.approx(1.0), True) and metrics[("edit-1", "psnr")][:2] == (100.0, True)
    assert metrics[("00003-d", "ssim")][1] is False and metrics[("00003-d", "psnr")][1] is False  # noise vs the reference
    assert {v[2] for (s, m), v in metrics.items() if m in ("lpips", "bertscore")} == {"unavailable"}

    rows = table3(db)
    by = {(r["by"], r["group"]): r for r in rows}
    assert set(by) == {("overall", "all"), ("category", "VQA"), ("category", "ImageEdit"), ("category", "MMGeneration"),
                       ("modality", "CT"), ("modality", "MRI"), ("modality", "Pathology"), ("modality", "X-Ray"),
                       ("paper_task", "Diagnostic VQA"), ("paper_task", "Lesion removal"), ("paper_task", "Report with annotation"),
                       ("paper_task", "VQA task")}
    assert [r["group"] for r in rows if r["by"] == "category"] == ["VQA", "ImageEdit", "MMGeneration"]
    assert all(r["model_name"] == "m" and r["rubric_id"] == "medgen/holistic-with-gt" for r in rows)
    assert {k for k in rows[0] if k in ("ssim", "psnr", "lpips", "bertscore", "bertscore_precision")} == {"ssim", "psnr", "lpips", "bertscore"}

    category = {"vqa-1": "VQA", "edit-1": "ImageEdit", "gen-1": "MMGeneration", "00003-d": "ImageEdit", "vqa-2": "VQA"}
    for group in ("VQA", "ImageEdit", "MMGeneration"):
        ids = [s for s, c in category.items() if c == group]
        row = by[("category", group)]
        assert row["samples"] == len(ids) and row["judge_samples"] == len(ids)
        assert row["judge"] == pytest.approx(sum(judged[s] for s in ids) / len(ids))
        assert row["lpips"] is None and row["bertscore"] is None  # unavailable here: no rate, not 0
    assert by[("category", "VQA")]["ssim"] is None and by[("category", "VQA")]["ssim_samples"] == 0  # no reference image
    assert by[("category", "ImageEdit")]["ssim"] == pytest.approx(0.5) and by[("category", "ImageEdit")]["ssim_samples"] == 2
    assert by[("category", "MMGeneration")]["psnr"] == pytest.approx(1.0)
    assert by[("overall", "all")]["ssim"] == pytest.approx(2 / 3) and by[("overall", "all")]["samples"] == 5
    assert by[("paper_task", "Lesion removal")]["psnr"] == pytest.approx(0.5)
    assert by[("modality", "X-Ray")]["ssim"] == 0.0 and by[("modality", "MRI")]["ssim"] == 1.0

    with duckdb.connect(str(db), read_only=True) as con:
        official = dict(con.execute("SELECT name, rate FROM accuracy_rates").fetchall())
    assert by[("overall", "all")]["judge"] == pytest.approx(official["overall"])
    assert by[("overall", "all")]["psnr"] == pytest.approx(official["psnr"])
    assert table3(db, model_name="other") == []

    # A run superseded by a re-run with an edited rubric is left out, as on the leaderboard,
    # unless it is asked for by id.
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE runs SET superseded_by = 'a-newer-run' WHERE run_id = ?", [run.run_id])
    assert table3(db) == []
    assert table3(db, run_id=run.run_id) == rows


def test_structured_answers_are_written_out_and_choices_travel_along(tmp_path: Path) -> None:
    """As the official evaluation reads them: a dict answer as `KEY: text` lines in report order
    (it was dropped, leaving an empty reference), and a multiple-choice task's options kept for
    the reference rubric's `text_form: medgen_eval`."""
    images = tmp_path / "images"
    _image(images / "a.png", 1)
    report = {"impression": "No acute disease.", "FINDINGS": {"lungs": "Clear."}}
    choices = ["A. Effusion", "B. Pneumothorax"]
    lines = [{**_record("VQA", input_image="a.png", answer=report, paper_task="report-generation"), "id": "r"},
             {**_record("VQA", input_image="a.png", answer="B", paper_task="multiple-choice", choice=choices, instruction="Which?"), "id": "m"}]
    records = tmp_path / "records.json"
    records.write_text(json.dumps(lines))
    manifest = _jsonl(import_medgen(records, images, tmp_path / "out").manifest)
    assert manifest["r"]["answer"] == "FINDINGS:\n  lungs: Clear.\nimpression: No acute disease."
    assert manifest["m"]["choice"] == choices and manifest["m"]["answer"] == "B"
