"""Start-up benchmark: a small judge job, end to end, in cold processes on both sides.

Sections (all in one run, against one loopback judge served from a child process that records
when each request arrives):

1. A 30-task IlluGenBench job (per-dimension calls: 90, two 64-px PNGs each; the job writer of
   `bench/judge_throughput.py`) scored by `rubric-judge score --transport direct` in a fresh
   process, beside a client that does what the official `eval_rubric.py` does: a fresh Python
   process that imports requests (httpx or urllib if it is missing), reads the tasks, and posts
   one chat completion per task and dimension from a 32-thread pool, both images base64-encoded
   into the messages, then parses the JSON answers. Same concurrency (32) and latency (0.3 s).
   Wall time is measured around each subprocess, so interpreter start and imports count. Where
   the difference goes is printed in the table (per repeat) and under it (medians): for each
   side, the time from its start to its first judge request, and from the last request's answer
   (its arrival at the judge plus the latency) to the process's end.
2. A fully cached re-run of the same job (every call from the verdict cache: no judge request).
3. `rubric-judge --help`.
4. The time from the start of `rubric-judge score` to the first judge request of a 96-sample
   MedGEN job (judge-only holistic-with-gt rubric, 512-px images drawn with label strips), as
   seen by the server.

Figures are printed, never asserted; they depend on the machine (cores and load). Usage:

    .venv/bin/python bench/small_job.py                  # 3 repeats, the defaults
    .venv/bin/python bench/small_job.py --repeats 5 --latency 0.3 --concurrency 32 --tasks 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

JUDGE = "openai/bench-judge"
CLI = str(Path(sys.executable).with_name("rubric-judge"))

# The loopback judge in a child process; it records the wall-clock arrival time of each request.
_SERVER_CODE = r"""
import sys, time
from rubric_judge.testing.loopback import LoopbackJudge
arrivals = []
server = LoopbackJudge(latency=float(sys.argv[1]))
server.fault_rule = lambda body, index: arrivals.append(time.time())  # called once per request; no fault
server.start()
print(server.base_url, flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "count":
        print(len(arrivals), flush=True)
    elif cmd == "first":
        print(arrivals[0] if arrivals else "none", flush=True)
    elif cmd == "last":
        print(arrivals[-1] if arrivals else "none", flush=True)
    elif cmd == "clear":
        arrivals.clear(); print("ok", flush=True)
    elif cmd == "quit":
        break
server.stop()
"""

# What the official eval_rubric.py does, in a fresh process: one request per (task, dimension)
# from a 32-thread pool, each image read and base64-encoded into the messages, JSON answers parsed.
_OFFICIAL_CLIENT = r"""
import base64, concurrent.futures, json, sys
try:
    import requests
    def post(url, body):
        r = requests.post(url, json=body, headers={"Authorization": "Bearer sk-bench"}, timeout=120)
        r.raise_for_status()
        return r.json()
except ImportError:
    import urllib.request
    def post(url, body):
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

base_url, job_file, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
jobs = json.load(open(job_file))

def image_url(path):
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()

def one(item):
    task, dimension, criteria = item
    properties = {c["id"]: {"type": "object", "properties": {"reasoning": {"type": "string"}, "satisfied": {"type": "boolean"}},
                            "required": ["reasoning", "satisfied"], "description": c["text"]} for c in criteria}
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    listing = "\n".join(f"{i + 1}. {c['text']} (weight {c['weight']})" for i, c in enumerate(criteria))
    body = {"model": "bench-judge", "temperature": 0,
            "messages": [{"role": "system", "content": "You are an expert medical illustrator and reviewer."},
                         {"role": "user", "content": [
                             {"type": "text", "text": f"Prompt: {task['prompt']}\nJudge {dimension}:\n{listing}"},
                             {"type": "text", "text": "Image 1: reference"}, {"type": "image_url", "image_url": {"url": image_url(task["reference"])}},
                             {"type": "text", "text": "Image 2: generated"}, {"type": "image_url", "image_url": {"url": image_url(task["generated"])}}]}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "verdicts", "schema": schema}}}
    answer = json.loads(post(base_url + "/chat/completions", body)["choices"][0]["message"]["content"])
    return len(answer) == len(criteria)

items = [(task, dim, crits) for task in jobs for dim, crits in task["dimensions"].items()]
with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    ok = sum(pool.map(one, items))
print(f"{ok}/{len(items)}")
"""


class Server:
    def __init__(self, latency: float):
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER_CODE, str(latency)], cwd=str(ROOT), env=_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"loopback judge did not start (got {self.base_url!r})")

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.ask("quit")
        self.proc.wait(timeout=10)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def _timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=600)
    wall = time.perf_counter() - t0
    if done.returncode not in (0,):
        print(f"  note: {argv[1] if len(argv) > 1 else argv[0]} exited {done.returncode}: {(done.stdout + done.stderr)[-400:]}")
    return wall, done


def official_job_file(root: Path, tasks_dir: Path, manifest: Path) -> Path:
    """The job as the official script reads it: tasks with prompt, images and criteria by dimension."""
    import yaml

    tasks = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        spec = yaml.safe_load((tasks_dir / f"{row['id']}.yaml").read_text(encoding="utf-8"))
        dimensions: dict[str, list] = {}
        for criterion in spec["criteria"]:
            dimensions.setdefault(criterion["dimension"], []).append(criterion)
        tasks.append({"id": row["id"], "prompt": row["prompt"], "reference": str(root / row["reference_image"]),
                      "generated": str(root / "outputs" / "bench-model" / f"{row['id']}.png"), "dimensions": dimensions})
    path = root / "official-job.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def score_argv(tasks_dir: Path, manifest: Path, outputs: Path, base_url: str, concurrency: int, db: Path, cache_dir: Path) -> list[str]:
    return [CLI, "score", str(tasks_dir), "--data", str(manifest), "--outputs", str(outputs), "--model", "bench-model",
            "--judge", JUDGE, "--api-base", base_url, "--transport", "direct", "--concurrency", str(concurrency),
            "--db", str(db), "--cache-dir", str(cache_dir)]


def _timed_job(argv: list[str], server: Server, latency: float) -> dict[str, float]:
    """A judge job's wall time, the time from its start to its first judge request, and the time
    from its last request's answer (arrival + latency) to its end, as the judge saw them."""
    server.ask("clear")
    started = time.time()
    wall, _ = _timed(argv)
    first, last = server.ask("first"), server.ask("last")
    if first == "none":
        return {"wall": wall, "requests": 0, "first": float("nan"), "tail": float("nan")}
    return {"wall": wall, "requests": int(server.ask("count")), "first": float(first) - started,
            "tail": started + wall - (float(last) + latency)}


def bench_small_job(args, tmp: Path, server: Server) -> list[dict]:
    from judge_throughput import write_job

    root = tmp / "small"
    tasks_dir, manifest, outputs = write_job(root, args.tasks, [9] * args.tasks)
    job_file = official_job_file(root, tasks_dir, manifest)
    rows = []
    for repeat in range(args.repeats):
        official = _timed_job([sys.executable, "-c", _OFFICIAL_CLIENT, server.base_url, str(job_file), str(args.concurrency)], server, args.latency)
        cache_dir, db = tmp / f"cache-{repeat}", tmp / f"runs-{repeat}.duckdb"
        ours = _timed_job(score_argv(tasks_dir, manifest, outputs, server.base_url, args.concurrency, db, cache_dir), server, args.latency)
        server.ask("clear")
        cached, _ = _timed(score_argv(tasks_dir, manifest, outputs, server.base_url, args.concurrency, db, cache_dir))
        cached_requests = int(server.ask("count"))
        rows.append({"official": official["wall"], "ours": ours["wall"], "cached": cached, "official_requests": official["requests"],
                     "our_requests": ours["requests"], "cached_requests": cached_requests, "official_first": official["first"],
                     "our_first": ours["first"], "official_tail": official["tail"], "our_tail": ours["tail"]})
    return rows


def bench_help(repeats: int) -> list[float]:
    return [_timed([CLI, "--help"])[0] for _ in range(repeats)]


def bench_first_request(args, tmp: Path, server: Server) -> list[dict]:
    from metrics_throughput import write_medgen_job

    job = write_medgen_job(tmp / "medgen", args.medgen_samples, args.medgen_size, tmp / "unused-model")
    rows = []
    for repeat in range(args.repeats):
        server.ask("clear")
        t0 = time.time()
        wall, _ = _timed(score_argv(job["judge_only"].parent, job["manifest"], job["outputs"], server.base_url, args.concurrency,
                                    tmp / f"medgen-{repeat}.duckdb", tmp / f"medgen-cache-{repeat}"))
        first = server.ask("first")
        rows.append({"first_request_s": float(first) - t0 if first != "none" else float("nan"), "wall": wall,
                     "requests": int(server.ask("count"))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--medgen-samples", type=int, default=96)
    parser.add_argument("--medgen-size", type=int, default=512)
    parser.add_argument("--skip-medgen", action="store_true")
    args = parser.parse_args()
    print(f"CPUs: {os.cpu_count()}  python: {sys.version.split()[0]}  latency {args.latency} s  concurrency {args.concurrency}")
    with tempfile.TemporaryDirectory(prefix="rj-small-") as name:
        tmp = Path(name)
        server = Server(args.latency)
        try:
            rows = bench_small_job(args, tmp, server)
            helps = bench_help(args.repeats)
            medgen = [] if args.skip_medgen else bench_first_request(args, tmp, server)
        finally:
            server.close()
    print(f"\n{args.tasks}-task IlluGenBench job, {rows[0]['official_requests']} calls, cold processes (wall time, s)")
    # Per repeat, where each side's time went: start to first request / last answer to exit.
    print(f"  {'run':>3}  {'official-style':>14}  {'rubric-judge':>12}  {'ratio':>6}  {'cached re-run':>13}  {'re-run requests':>15}"
          f"  {'first request':>13}  {'after last answer':>17}")
    for i, row in enumerate(rows, 1):
        print(f"  {i:>3}  {row['official']:>14.2f}  {row['ours']:>12.2f}  {row['ours'] / row['official']:>5.2f}x  {row['cached']:>13.2f}  "
              f"{row['cached_requests']:>15}  {row['official_first']:>5.2f} / {row['our_first']:<5.2f}  {row['official_tail']:>9.2f} / {row['our_tail']:<5.2f}")
    median = {k: statistics.median(r[k] for r in rows) for k in ("official", "ours", "cached")}
    print(f"  med  {median['official']:>14.2f}  {median['ours']:>12.2f}  {median['ours'] / median['official']:>5.2f}x  {median['cached']:>13.2f}")
    parts = {k: statistics.median(r[k] for r in rows) for k in ("official_first", "our_first", "official_tail", "our_tail")}
    print(f"  medians, official-style / rubric-judge: start to first judge request {parts['official_first']:.2f} / {parts['our_first']:.2f} s; "
          f"last answer to exit {parts['official_tail']:.2f} / {parts['our_tail']:.2f} s")
    print(f"\nrubric-judge --help: {', '.join(f'{h:.2f}' for h in helps)} s")
    if medgen:
        print(f"\n{args.medgen_samples}-sample MedGEN job ({args.medgen_size} px, judge only): start to first judge request, s")
        for i, row in enumerate(medgen, 1):
            print(f"  {i:>3}  first request {row['first_request_s']:.2f}   whole run {row['wall']:.2f}   requests {row['requests']}")


if __name__ == "__main__":
    main()
