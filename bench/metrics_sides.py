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

"ours" is rubric-judge: `compute_image_metrics(pairs, ("ssim", "psnr", "lpips"),
ImageMetricOptions(preset="medgen", lpips_weights=trunk), device="cpu")` then
`compute_bertscore(pairs, BertScoreOptions(model=model_dir, num_layers=...), device="cpu")`.
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
    with stage("imports"):
        import rubric_judge.metrics.image as image_module
        from rubric_judge.metrics.image import IMAGE_METRICS, ImageMetricOptions, compute_image_metrics
        from rubric_judge.metrics.lpips import load_lpips_model
        from rubric_judge.metrics.text import BertScoreOptions, compute_bertscore, get_bertscorer

    options = ImageMetricOptions(preset="medgen", lpips_weights=Path(job["trunk"]))
    with stage("lpips model load"):
        load_lpips_model("alex", options.lpips_weights, "cpu")  # cached: compute_image_metrics reuses it
    # Split the image call into its LPIPS forwards and the rest (decode, resize, SSIM, PSNR).
    forward = image_module._lpips_for_chunk

    def timed_forward(*args, **kwargs):
        with stage("lpips"):
            return forward(*args, **kwargs)

    image_module._lpips_for_chunk = timed_forward
    pairs = job["pairs"]
    t0 = time.perf_counter()
    images = compute_image_metrics([(p["id"], Path(p["output"]), Path(p["reference"])) for p in pairs], IMAGE_METRICS, options, device="cpu")
    stage.seconds["image decode + ssim + psnr"] = time.perf_counter() - t0 - stage.seconds.get("lpips", 0.0)
    text_options = BertScoreOptions(model=job["model_dir"], num_layers=job["num_layers"])
    with stage("bertscore model load"):
        get_bertscorer(text_options, "cpu")
    with stage("bertscore"):
        texts = compute_bertscore([(p["id"], p["candidate"], p["answer"]) for p in pairs], text_options, device="cpu")
    values = {f"{sample_id}|{metric}": v.value for (sample_id, metric), v in {**images, **texts}.items() if v.value is not None}
    bad = [f"{k}: {v.status} {v.detail}" for k, v in {**images, **texts}.items() if v.status != "ok"]
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
    (job_dir / f"{side}.json").write_text(json.dumps({"stages": stage.seconds, "values": values}), encoding="utf-8")


if __name__ == "__main__":
    main()
