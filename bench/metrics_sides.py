"""One side of the cold-process metrics comparison in bench/metrics_throughput.py, run as a fresh
subprocess so that imports and model loads count, as they do for a real evaluation run.

    python bench/metrics_sides.py official|ours <job dir>

<job dir>/job.json holds {"trunk": <LPIPS trunk file>, "model_dir": <BERTScore model dir>,
"num_layers": 6, "pairs": [{"id", "output", "reference", "candidate", "answer"}, ...]}. The side
writes <job dir>/<side>.json: {"stages": {name: seconds}, "values": {"<id>|<metric>": float}}.
Stage times are wall clock inside the process; the parent adds the interpreter start-up it saw.

"official" mirrors yangjj007/MedGEN-Bench-eval (eval.py `basic_eval` + util/metrics.py), with
only the parts rubric-judge also computes (no BLEU, Rad-DINO or clinical text metrics):

* importing util/metrics.py sets torch.set_num_threads(MEDGEN_TORCH_NUM_THREADS, default 4) and
  set_num_interop_threads(1);
* items are processed in batches of 8 (`--batch_size` default): per item,
  `Image.open(output).convert("RGB")` and `Image.open(ground_truth).convert("RGB")`;
* per batch, BERT_Score first (`bert_score.score(cands, refs, model_type=..., lang="en",
  rescale_with_baseline=False, num_layers=..., device="cpu", verbose=False)`: one call per batch,
  which builds the model every call), then LPIPS, PSNR and SSIM, each a separate pass of
  `FR_IQA(eval, ref, metric)` over the batch's pairs: an output whose size differs is resized to
  the ground truth's size with LANCZOS in every call; LPIPS = `transforms.Compose([Resize((256,
  256)), ToTensor()])` of each image into the lazily built global `lpips.LPIPS(net="alex")`, one
  pair per forward under inference_mode; PSNR = float32 MSE; SSIM = skimage
  `structural_similarity` of `convert("L")` with data_range=255.
  The LPIPS model is `lpips.LPIPS(net="alex", pnet_rand=True)` with the trunk loaded from the
  given file: the module `lpips.LPIPS(net="alex")` builds, minus torchvision's hub download.

"ours" is what `rubric-judge score` runs for a rubric with these metrics (medgen
holistic-with-gt's ssim/psnr/lpips specs and bertscore pointed at the job's model):
`compute_run_metrics(specs, samples, device="cpu", cache=<MetricCache in a fresh folder>)`, LPIPS
weights found under $TORCH_HOME as `score` finds them. Its stages are timed by wrapping the
functions it calls (load_lpips_model, _lpips_for_chunk, compute_image_metrics, get_bertscorer,
compute_bertscore). The side also records its CPU time (user + system, all threads), and ends
as the `rubric-judge` executable ends (`cli.app.end_process`: exit handlers, a flush, no
interpreter teardown, about 0.8 s with torch loaded, 2-3 s with transformers too); the official
side ends as `python eval.py` does. `--ordinary-exit` in bench/metrics_throughput.py ends both
sides the ordinary way.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCH = 8  # eval.py --batch_size default


class Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def run_official(job: dict, stage: Stages) -> dict[str, float]:
    with stage("imports"):
        from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

        ensure_torchvision_importable()  # this venv's CPU torch + CUDA torchvision; a no-op elsewhere
        import numpy as np
        import torch
        from PIL import Image

        torch.set_num_threads(max(1, int(os.environ.get("MEDGEN_TORCH_NUM_THREADS", "4"))))
        with suppress(RuntimeError):
            torch.set_num_interop_threads(1)

    lpips_model = None

    def get_lpips_model():
        nonlocal lpips_model
        if lpips_model is None:
            with stage("lpips model load"):
                import lpips

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
                state = torch.load(job["trunk"], map_location="cpu", weights_only=True)
                model.net.load_state_dict({n: state[f"features.{n.split('.', 1)[1]}"] for n in model.net.state_dict()})
                model.eval()
                lpips_model = model
        return lpips_model

    def fr_iqa(eval_image, ref_image, metric: str) -> float:
        if eval_image.size != ref_image.size:
            eval_image = eval_image.resize(ref_image.size, Image.Resampling.LANCZOS)
        if metric == "lpips":
            from torchvision import transforms

            preprocess = transforms.Compose([transforms.Resize((256, 256)), transforms.ToTensor()])
            candidate = preprocess(eval_image).unsqueeze(0)
            reference = preprocess(ref_image).unsqueeze(0)
            with torch.inference_mode():
                return float(get_lpips_model()(candidate, reference).item())
        if metric == "psnr":
            candidate = np.asarray(eval_image, dtype=np.float32)
            reference = np.asarray(ref_image, dtype=np.float32)
            mse = float(np.mean((candidate - reference) ** 2))
            return 100.0 if mse == 0 else float(20 * np.log10(255.0 / np.sqrt(mse)))
        from skimage.metrics import structural_similarity

        return float(structural_similarity(np.asarray(ref_image.convert("L")), np.asarray(eval_image.convert("L")), data_range=255))

    values: dict[str, float] = {}
    pairs = job["pairs"]
    for start in range(0, len(pairs), BATCH):
        batch = pairs[start : start + BATCH]
        with stage("image decode"):
            eval_images = [Image.open(p["output"]).convert("RGB") for p in batch]
            ref_images = [Image.open(p["reference"]).convert("RGB") for p in batch]
        with stage("bertscore (incl. model load per batch)"):
            from bert_score import score as bert_score

            _, _, f1 = bert_score([p["candidate"] for p in batch], [p["answer"] for p in batch], model_type=job["model_dir"],
                                  lang="en", rescale_with_baseline=False, num_layers=job["num_layers"], device="cpu", verbose=False)
            for p, value in zip(batch, f1.tolist(), strict=True):
                values[f"{p['id']}|bertscore"] = value
        for metric in ("lpips", "psnr", "ssim"):
            if metric == "lpips":
                get_lpips_model()  # built on first use (its own stage), as the official lazy global
            with stage(metric):
                for p, e, r in zip(batch, eval_images, ref_images, strict=True):
                    values[f"{p['id']}|{metric}"] = fr_iqa(e, r, metric)
    return values


def run_ours(job: dict, stage: Stages) -> dict[str, float]:
    """What `rubric-judge score` runs for a rubric with these four metrics: compute_run_metrics
    over the samples (the medgen holistic-with-gt metric specs, BERTScore pointed at the job's
    model), with a metric cache in a fresh folder, LPIPS weights from $TORCH_HOME as `score`
    finds them. Stages are wall time on the main thread; the BERTScore model loads on a
    background thread meanwhile, and its stage is only what the main thread still waited."""
    trunk = Path(job["trunk"])
    os.environ["TORCH_HOME"] = str(trunk.parent.parent.parent)  # <TORCH_HOME>/hub/checkpoints/<file>
    with stage("imports"):
        import tempfile
        import threading

        import rubric_judge.metrics.image as image_module
        import rubric_judge.metrics.text as text_module
        from rubric_judge.metrics import MetricCache, compute_run_metrics
        from rubric_judge.planning.samples import Sample
        from rubric_judge.rubrics.schema import MetricSpec

    image_pair = {"output": "output_image", "reference": "ground_truth_image", "preset": "medgen"}
    specs = [MetricSpec(metric="ssim", **image_pair), MetricSpec(metric="psnr", **image_pair), MetricSpec(metric="lpips", **image_pair),
             MetricSpec(metric="bertscore", output="response", reference="answer", model=job["model_dir"], num_layers=job["num_layers"])]
    samples = [Sample(p["id"], {"output_image": Path(p["output"]), "ground_truth_image": Path(p["reference"]),
                                "response": p["candidate"], "answer": p["answer"]}) for p in job["pairs"]]

    def timed(module, name: str, label: str, exclude: tuple[str, ...] = ()) -> None:
        function = getattr(module, name)

        def wrapper(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return function(*args, **kwargs)  # the preload thread: not a main-thread stage
            before = {n: stage.seconds.get(n, 0.0) for n in exclude}
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                inner = sum(stage.seconds.get(n, 0.0) - before[n] for n in exclude)
                stage.seconds[label] = stage.seconds.get(label, 0.0) + time.perf_counter() - t0 - inner

        setattr(module, name, wrapper)

    timed(image_module, "load_lpips_model", "lpips model load")
    timed(image_module, "_lpips_for_chunk", "lpips")
    timed(image_module, "compute_image_metrics", "import torch + image decode + ssim + psnr", ("lpips model load", "lpips"))
    timed(text_module, "get_bertscorer", "bertscore model load (still waited for)")
    timed(text_module, "compute_bertscore", "bertscore", ("bertscore model load (still waited for)",))
    with tempfile.TemporaryDirectory(prefix="rj-metric-cache-") as cache_dir:
        cache = MetricCache(Path(cache_dir))
        t0 = time.perf_counter()
        rows = compute_run_metrics(specs, samples, device="cpu", cache=cache)
        cache.close()
    computing = ("lpips model load", "lpips", "import torch + image decode + ssim + psnr", "bertscore model load (still waited for)", "bertscore")
    stage.seconds["cache look-up and writes"] = time.perf_counter() - t0 - sum(stage.seconds.get(n, 0.0) for n in computing)
    values = {f"{row.sample_id}|{row.metric}": row.value for row in rows if row.value is not None}
    bad = [f"{row.sample_id} {row.metric}: {row.status} {row.detail}" for row in rows if row.status != "ok"]
    if bad:
        print(f"  note ({len(bad)} not ok): {bad[0]}", file=sys.stderr)
    return values


def main() -> None:
    side, job_dir = sys.argv[1], Path(sys.argv[2])
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.simplefilter("ignore")
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    stage = Stages()
    values = (run_official if side == "official" else run_ours)(job, stage)
    stage.seconds["total in process"] = time.perf_counter() - T_START
    result = {"stages": stage.seconds, "values": values, "cpu": time.process_time()}
    (job_dir / f"{side}.json").write_text(json.dumps(result), encoding="utf-8")
    if side == "ours" and os.environ.get("RJ_BENCH_ORDINARY_EXIT") != "1":
        from rubric_judge.cli.app import end_process

        end_process(0)


if __name__ == "__main__":
    main()
