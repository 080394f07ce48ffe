"""Report rendering benchmark: an IlluGenBench-sized, two-model database -> `rubric-judge report`.

Builds a synthetic job like bench/judge_throughput.py's (300 tasks by default, as in the report issue, ~30 criteria
each with signed weights over three dimensions, task rubrics extending
builtin:illugenbench/base.yaml), with larger images (a reference and one output per model,
512 px by default, drawn shapes so they compress like illustrations, not like noise). Both
models' runs are written through the real store path (`build_plan` -> `ResultStore.write_samples`
/ `write_outcomes`) with synthetic judge outcomes: verdicts with reasoning, a few unscored
calls and a few missing outputs, so no judge or network is involved. Then it renders the report
(embedded thumbnails, then `--link-images`) and prints wall time and file size, in-process and
through the CLI (a fresh process, imports included), with and without the thumbnail cache a
second report over the same images uses. Figures are printed, never asserted.

    .venv/bin/python bench/report_render.py                  # 300 tasks, 2 models, 512 px images
    .venv/bin/python bench/report_render.py --tasks 300 --image-size 1024 --repeat 3
    .venv/bin/python bench/report_render.py --keep /tmp/report-bench   # keep the DB and reports
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DIMENSIONS = ("scientific_accuracy", "structural_correctness", "semantic_alignment")
MODELS = ("model-a", "model-b")
JUDGE = "openai/bench-judge"


def _image(path: Path, seed: int, size: int) -> None:
    """A flat-colour illustration-like image: background, panels, circles, lines, labels."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(200, 256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x, y = rng.randrange(size), rng.randrange(size)
        r = rng.randrange(size // 20, size // 5)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.randrange(3)
        if shape == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(40, 40, 40), width=max(1, size // 256))
        elif shape == 1:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
        else:
            draw.line((x, y, rng.randrange(size), rng.randrange(size)), fill=colour, width=max(2, size // 128))
    for i in range(5):
        draw.text((rng.randrange(size - 80), rng.randrange(size - 20)), f"label {i}", fill=(20, 20, 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def write_job(root: Path, tasks: int, criteria: int, size: int) -> tuple[Path, Path, dict[str, Path]]:
    """tasks/*.yaml, manifest.jsonl, references/ and outputs/<model>/ (a few outputs missing)."""
    rng = random.Random(1234)
    tasks_dir = root / "tasks"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    per_task = [criteria // tasks + (1 if t < criteria % tasks else 0) for t in range(tasks)]
    categories = ("Anatomical", "Molecular & Cellular", "Surgical", "Educational", "Disease Illustration")
    lines, images = [], []
    outputs = {model: root / "outputs" / model for model in MODELS}
    for t in range(tasks):
        task_id = f"task-{t:04d}"
        lines.append(json.dumps({"id": task_id, "category": categories[t % len(categories)],
                                 "prompt": f"A labelled medical illustration number {t} of an organ with its main structures, "
                                           "drawn for a first-year anatomy course.",
                                 "reference_image": f"references/{task_id}.png"}))
        images.append((root / "references" / f"{task_id}.png", 3 * t))
        for m, model in enumerate(MODELS):
            if (t + 7 * m) % 97 != 5:  # ~1% missing outputs per model
                images.append((outputs[model] / f"{task_id}.png", 3 * t + 1 + m))
        rows = []
        for i in range(per_task[t]):
            dim = DIMENSIONS[i % 3]
            weight = rng.choice([5, 3, 1, -3]) if i >= 3 else 5
            rows.append(f'  - {{id: {dim}-{i // 3 + 1}, dimension: {dim}, weight: {weight}, '
                        f'text: "Criterion {i} of {task_id}: the illustration shows structure {i} in its correct anatomical position, labelled."}}')
        (tasks_dir / f"{task_id}.yaml").write_text(
            f"extends: builtin:illugenbench/base.yaml\ntask: {task_id}\ncriteria:\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: _image(job[0], job[1], size), images))
    return tasks_dir, root / "manifest.jsonl", outputs


def fill_db(db: Path, tasks_dir: Path, manifest: Path, outputs: dict[str, Path]) -> int:
    """One run per model through the store, with synthetic outcomes; returns the verdict count."""
    from rubric_judge.judge.executor import Outcome
    from rubric_judge.planning.compile import JudgeTarget, build_plan
    from rubric_judge.planning.job import load_job
    from rubric_judge.store.db import ResultStore, RunInfo

    store = ResultStore(db)
    verdicts = 0
    try:
        for m, model in enumerate(MODELS):
            job = load_job(tasks_dir, manifest, outputs[model])
            plan = build_plan(job.rubrics, job.samples, JudgeTarget(JUDGE, None))
            if plan.problems:
                raise RuntimeError(f"synthetic job has problems: {plan.problems[:3]}")
            rng = random.Random(99 + m)
            config = {"data": str(manifest), "outputs": str(outputs[model]), "replicates": 1, "offline_judge": False}
            run_id = store.begin_run(RunInfo(job.rubrics[0], model, JUDGE, None, config))
            store.write_samples(run_id, plan.samples, 1)
            skill = 0.8 if m == 0 else 0.6
            batch = []
            for call in plan.calls:
                hit = rng.random() < 0.3
                if rng.random() < 0.01:
                    batch.append(Outcome(call, "unscored", None, "the answer left out criteria", attempts=3, latency_ms=2500.0))
                    continue
                answer = {}
                for c in call.criteria:
                    met = rng.random() < (skill if c.weight > 0 else 1 - skill)
                    answer[c.id] = {"satisfied": met, "confidence": round(rng.uniform(0.55, 0.99), 2),
                                    "reasoning": f"The generated image {'shows' if met else 'does not show'} what criterion {c.id} asks for: "
                                                 "the structure is drawn in the expected place and its label is legible."}
                verdicts += len(call.criteria)
                batch.append(Outcome(call, "ok", answer, attempts=0 if hit else 1, latency_ms=0.0 if hit else rng.uniform(800, 4000),
                                     prompt_tokens=1500, completion_tokens=400, cost_usd=0.0062, cache_hit=hit))
            store.write_outcomes(run_id, batch)
            store.finish_run(run_id, "finished")
    finally:
        store.close()
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks (samples) per model (default 300)")
    parser.add_argument("--criteria", type=int, default=9015, help="criteria over all tasks (default 9015)")
    parser.add_argument("--image-size", type=int, default=512, help="side of the synthetic PNGs in px (default 512)")
    parser.add_argument("--repeat", type=int, default=2, help="renders per mode; the fastest is reported (default 2)")
    parser.add_argument("--keep", type=Path, help="build in this directory and keep it (default: a temp dir)")
    args = parser.parse_args()

    from rubric_judge.report import build_report

    root = args.keep or Path(tempfile.mkdtemp(prefix="rj-report-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        tasks_dir, manifest, outputs = write_job(root, args.tasks, args.criteria, args.image_size)
        db = root / "bench.duckdb"
        db.unlink(missing_ok=True)
        verdicts = fill_db(db, tasks_dir, manifest, outputs)
        print(f"setup: {args.tasks} tasks x {len(MODELS)} models, {verdicts:,} verdicts, {args.image_size} px images, "
              f"{time.perf_counter() - t0:.1f} s (not timed below); cpus={os.cpu_count()}")
        cache = root / "thumbnail-cache"
        shutil.rmtree(cache, ignore_errors=True)
        modes = (("embedded, cold", {}), ("embedded, cached thumbs", {"cache_dir": cache}), ("--link-images", {"link_images": True}))
        for label, options in modes:
            if "cache_dir" in options:
                build_report(db, root / "report-warmup.html", **options)  # fills the thumbnail cache
            best = None
            for _ in range(args.repeat):
                result = build_report(db, root / f"report-{label.split(',')[0].strip('-')}.html", **options)
                best = result if best is None or result.seconds < best.seconds else best
            extra = "" if options.get("link_images") else f", {best.images} thumbnails = {best.image_bytes / 1048576:.1f} MB"
            print(f"  in-process, {label:24s}: {best.seconds:5.2f} s, {best.bytes / 1048576:5.1f} MB ({best.cards} cards{extra})")
        cli = [str(Path(sys.executable).with_name("rubric-judge")), "report", "--db", str(db), "--out", str(root / "report-cli.html"), "--no-cache"]
        t0 = time.perf_counter()
        subprocess.run(cli, check=True, stdout=subprocess.DEVNULL)
        print(f"  CLI, fresh process (imports included), embedded, cold: {time.perf_counter() - t0:5.2f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
