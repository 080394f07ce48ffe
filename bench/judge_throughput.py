"""Judge-call throughput benchmark: the rubric_judge engine vs a naive thread-pool client.

Everything runs against the loopback OpenAI-compatible judge
(`rubric_judge.testing.loopback.LoopbackJudge`) served from a *child process*, so the CPU time
measured in this process is the client's alone and the server's CPU is reported separately.

Sections (all in one run):

1. Engine: `Executor` (instructor, asyncio, cache off) over its `direct` transport (what `auto` picks
   for an OpenAI-compatible --api-base) and over `litellm`, on N synthetic JudgeCalls built
   through the real compile path (rubric YAML extending builtin:illugenbench/base.yaml, manifest,
   PNGs -> load_job -> build_plan), at concurrency C against a server answering after L seconds.
2. Naive baseline, like the official IlluGenBench script: ThreadPoolExecutor(C), each worker does a
   plain `requests` POST of an equivalent chat-completions body (same messages, same tool schema,
   forced tool call) and json-parses the answer and the tool arguments.
   Both are run at L (default 1.0 s) and at a low latency (default 0.2 s) to show peak calls/s.
3. A fully cached re-run of an IlluGenBench-sized job (296 tasks, 9,015 criteria, per-dimension
   calls = 888) through `rubric_judge.run.score`: first run (fills the cache) and cached re-run
   wall times, plus the HTTP request count the server saw during the re-run (should be 0).
4. A cProfile of the engine (one transport) at the low latency: the top cumulative entries from
   rubric_judge / litellm / instructor.

Figures are printed, never asserted. Usage:

    .venv/bin/python bench/judge_throughput.py                 # defaults: N=256 and 1024, C=64, L=1.0 (and 0.2 at the largest N)
    .venv/bin/python bench/judge_throughput.py -n 512,2048 -c 128 --latency 0.5 --peak-latency 0.1
    .venv/bin/python bench/judge_throughput.py --skip-cached --skip-profile
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

JUDGE = "openai/bench-judge"
# The engine's two transports (judge/transport.py), each a row of the results: `direct` is what
# `auto` picks for this OpenAI-compatible server; `litellm` is the path every other provider takes.
TRANSPORTS = ("direct", "litellm")
DIMENSIONS = ("scientific_accuracy", "structural_correctness", "semantic_alignment")

# --------------------------------------------------------------------------------------------
# The loopback judge in a child process: prints its base_url, then answers commands on stdin.

_SERVER_CODE = r"""
import json, sys, time
from rubric_judge.testing.loopback import LoopbackJudge
server = LoopbackJudge(latency=float(sys.argv[1])).start()
print(server.base_url, flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "count":
        print(server.request_count, flush=True)
    elif cmd == "cpu":
        print(time.process_time(), flush=True)
    elif cmd == "clear":
        server.clear_requests(); print("ok", flush=True)
    elif cmd == "quit":
        break
server.stop()
"""


class ServerProcess:
    def __init__(self, latency: float):
        self.latency = latency
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER_CODE, str(latency)], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"loopback judge child did not start (got {self.base_url!r})")

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def count(self) -> int:
        return int(self.ask("count"))

    def cpu(self) -> float:
        return float(self.ask("cpu"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("quit")
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Synthetic jobs


def _png(path: Path, seed: int, size: int = 64) -> None:
    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    for _ in range(12):  # a few blocks so files differ and are not trivially small
        x, y = rng.randrange(size - 8), rng.randrange(size - 8)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        for dx in range(8):
            for dy in range(8):
                image.putpixel((x + dx, y + dy), colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def write_job(root: Path, tasks: int, criteria_per_task: list[int]) -> tuple[Path, Path, Path]:
    """tasks/<id>.yaml (extending the IlluGenBench base), manifest.jsonl, references/ and outputs/."""
    rng = random.Random(1234)
    tasks_dir, refs, outs = root / "tasks", root / "references", root / "outputs" / "bench-model"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for t in range(tasks):
        task_id = f"task-{t:04d}"
        lines.append(json.dumps({"id": task_id, "category": "Anatomical",
                                 "prompt": f"A labelled medical illustration number {t} of an organ with its main structures.",
                                 "reference_image": f"references/{task_id}.png"}))
        _png(refs / f"{task_id}.png", seed=2 * t)
        _png(outs / f"{task_id}.png", seed=2 * t + 1)
        rows = []
        count = criteria_per_task[t]
        for i in range(count):
            dim = DIMENSIONS[i % 3]
            weight = rng.choice([5, 3, 1, -3]) if i >= 3 else 5  # signed; at least one positive per dimension
            rows.append(f'  - {{id: {dim}-{i // 3 + 1}, dimension: {dim}, weight: {weight}, '
                        f'text: "Criterion {i} of {task_id}: the illustration shows structure {i} correctly labelled."}}')
        (tasks_dir / f"{task_id}.yaml").write_text(
            f"extends: builtin:illugenbench/base.yaml\ntask: {task_id}\ncriteria:\n" + "\n".join(rows) + "\n", encoding="utf-8")
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tasks_dir, manifest, outs


def synthetic_calls(root: Path, n: int) -> list:
    from rubric_judge.planning.compile import JudgeTarget, build_plan
    from rubric_judge.planning.job import load_job

    tasks_dir, manifest, outs = write_job(root, tasks=4, criteria_per_task=[30, 30, 30, 30])
    job = load_job(tasks_dir, manifest, outs)
    plan = build_plan(job.rubrics, job.samples, JudgeTarget(JUDGE, None))
    if plan.problems:
        raise RuntimeError(f"synthetic job has problems: {plan.problems}")
    base = list(plan.calls)
    return [base[i % len(base)] for i in range(n)]


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Result:
    name: str
    n: int
    concurrency: int
    latency: float
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float
    ok: int

    @property
    def rate(self) -> float:
        return self.n / self.wall_s

    @property
    def ideal(self) -> float:
        return self.concurrency / self.latency if self.latency > 0 else float("inf")


@dataclass
class Summary:
    """Repeated runs of one client at one (N, C, L)."""

    runs: list[Result]

    @property
    def median(self) -> Result:
        return sorted(self.runs, key=lambda r: r.wall_s)[len(self.runs) // 2]

    @property
    def ratios(self) -> list[float]:
        return sorted(r.rate / r.ideal for r in self.runs)


def run_engine(calls: list, concurrency: int, server: ServerProcess, cache_dir: Path, transport: str,
               profile: cProfile.Profile | None = None) -> tuple[float, float, int]:
    from rubric_judge.cache.verdicts import CacheMode, VerdictCache
    from rubric_judge.judge.executor import Executor, ExecutorSettings, Progress

    executor = Executor(VerdictCache(cache_dir, CacheMode.off),
                        ExecutorSettings(concurrency=concurrency, api_base=server.base_url, api_key="sk-bench", transport=transport))
    cpu0, t0 = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    outcomes = executor.run(calls, Progress())
    if profile:
        profile.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ok = sum(o.status == "ok" for o in outcomes)
    bad = [o for o in outcomes if o.status != "ok"]
    if bad:
        print(f"  note: {len(bad)} engine calls not ok, e.g. {bad[0].status}: {bad[0].error}")
    return wall, cpu, ok


def naive_bodies(calls: list) -> list[dict]:
    """Equivalent chat-completions bodies: same messages, same tool schema, forced tool call."""
    from instructor import openai_schema

    from rubric_judge.judge.messages import build_messages

    schemas: dict[int, dict] = {}
    bodies = []
    for call in calls:
        key = id(call)
        if key not in schemas:
            schema = openai_schema(call.response_model).openai_schema
            schemas[key] = {"tools": [{"type": "function", "function": schema}],
                            "tool_choice": {"type": "function", "function": {"name": schema["name"]}},
                            "messages": build_messages(call)}
        s = schemas[key]
        bodies.append({"model": "bench-judge", "messages": s["messages"], "temperature": call.temperature,
                       "tools": s["tools"], "tool_choice": s["tool_choice"]})
    return bodies


def run_naive(bodies: list[dict], concurrency: int, server: ServerProcess) -> tuple[float, float, int]:
    import requests

    local = threading.local()
    url = server.base_url + "/chat/completions"

    def one(body: dict) -> bool:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(url, json=body, headers={"Authorization": "Bearer sk-bench"}, timeout=120)
        response.raise_for_status()
        message = response.json()["choices"][0]["message"]
        answer = json.loads(message["tool_calls"][0]["function"]["arguments"])
        return isinstance(answer, dict) and len(answer) > 0

    cpu0, t0 = time.process_time(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, bodies))
    return time.perf_counter() - t0, time.process_time() - cpu0, sum(results)


def measure(kind: str, latency: float, args, calls: list, bodies: list[dict], tmp: Path) -> Result:
    with ServerProcess(latency) as server:
        # Warm-up (imports, connection pools, the instructor client, image encodings): 4 calls.
        if kind in TRANSPORTS:
            run_engine(calls[:4], 4, server, tmp / "cache-off", kind)
        else:
            run_naive(bodies[:4], 4, server)
        server_cpu0 = server.cpu()
        if kind in TRANSPORTS:
            wall, cpu, ok = run_engine(calls, args.concurrency, server, tmp / "cache-off", kind)
        else:
            wall, cpu, ok = run_naive(bodies, args.concurrency, server)
        server_cpu = server.cpu() - server_cpu0
    return Result(kind, len(calls), args.concurrency, latency, wall, cpu, server_cpu, ok)


def cached_rerun(args, tmp: Path) -> dict:
    from rubric_judge.run import score

    tasks = args.big_tasks
    total = args.big_criteria
    per_task = [total // tasks + (1 if t < total % tasks else 0) for t in range(tasks)]
    root = tmp / "big"
    t0 = time.perf_counter()
    tasks_dir, manifest, outs = write_job(root, tasks, per_task)
    setup_s = time.perf_counter() - t0
    result = {"tasks": tasks, "criteria": sum(per_task), "setup_s": setup_s}
    with ServerProcess(args.fill_latency) as server:
        options = dict(data=manifest, outputs=outs, model="bench-model", judge=JUDGE, api_base=server.base_url,
                       concurrency=args.fill_concurrency, cache_dir=root / "cache", db=root / "bench.duckdb")
        t0 = time.perf_counter()
        code1 = score(tasks_dir, **options).exit_code
        result["first_s"] = time.perf_counter() - t0
        result["first_requests"] = server.count()
        t0 = time.perf_counter()
        code2 = score(tasks_dir, **options).exit_code
        result["cached_s"] = time.perf_counter() - t0
        result["cached_requests"] = server.count() - result["first_requests"]
        result["exit_codes"] = (code1, code2)
    return result


def profile_engine(calls: list, args, tmp: Path) -> str:
    profile = cProfile.Profile()
    with ServerProcess(args.peak_latency) as server:
        run_engine(calls[:4], 4, server, tmp / "cache-off", args.profile_transport)
        wall, cpu, _ = run_engine(calls, args.concurrency, server, tmp / "cache-off", args.profile_transport, profile)
    buffer = io.StringIO()
    stats = pstats.Stats(profile, stream=buffer)
    stats.sort_stats("cumulative").print_stats(r"rubric_judge|litellm|instructor", args.profile_top)
    buffer.write("\n--- top by own time (tottime), all modules ---\n")
    stats.sort_stats("tottime").print_stats(args.profile_top)
    head = f"cProfile of the engine ({args.profile_transport} transport), N={len(calls)} C={args.concurrency} L={args.peak_latency}: wall {wall:.2f} s, client CPU {cpu:.2f} s ({1000 * cpu / len(calls):.1f} ms/call, profiler overhead included)\n"
    text = buffer.getvalue()
    # Trim pstats' preamble and make paths shorter.
    text = text.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/python" + f"{sys.version_info.major}.{sys.version_info.minor}/site-packages/", "")
    return head + text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--calls", default="256,1024",
                        help="judge calls per throughput run, comma-separated (default 256,1024: a short job where start-up "
                             "counts, and about one IlluGenBench model's 888 calls); the low-latency run uses the largest")
    parser.add_argument("-c", "--concurrency", type=int, default=64, help="concurrent calls, both clients (default 64)")
    parser.add_argument("-l", "--latency", type=float, default=1.0, help="server latency per request in s (default 1.0)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each client at each (N, L), interleaved; the summary shows the median run and the range (default 3)")
    parser.add_argument("--peak-latency", type=float, default=0.2, help="second, low latency to show peak calls/s (default 0.2)")
    parser.add_argument("--big-tasks", type=int, default=296, help="tasks in the cached re-run job (default 296)")
    parser.add_argument("--big-criteria", type=int, default=9015, help="criteria in the cached re-run job (default 9015)")
    parser.add_argument("--fill-concurrency", type=int, default=128, help="concurrency of the cache-filling run (default 128)")
    parser.add_argument("--fill-latency", type=float, default=0.0, help="server latency of the cache-filling run (default 0)")
    parser.add_argument("--profile-top", type=int, default=15, help="profile entries to print (default 15)")
    parser.add_argument("--profile-transport", choices=TRANSPORTS, default="direct",
                        help="the engine transport to profile (default direct)")
    parser.add_argument("--skip-cached", action="store_true", help="skip the IlluGenBench-sized cached re-run")
    parser.add_argument("--skip-profile", action="store_true", help="skip the cProfile section")
    args = parser.parse_args()

    from rubric_judge.llm import litellm_module

    litellm_module()  # pay litellm's import before any clock starts
    results: list[Summary] = []
    with tempfile.TemporaryDirectory(prefix="rj-bench-") as name:
        tmp = Path(name)
        sizes = sorted({int(n) for n in args.calls.split(",")})
        all_calls = synthetic_calls(tmp / "small", sizes[-1])
        all_bodies = naive_bodies(all_calls)
        print(f"up to {len(all_calls)} calls from {len({id(c) for c in all_calls})} distinct compiled JudgeCalls "
              f"({len(all_calls[0].criteria)} criteria each, 2 images), cpus={os.cpu_count()}, python {sys.version.split()[0]}")
        runs = [(n, args.latency) for n in sizes] + ([(sizes[-1], args.peak_latency)] if args.peak_latency != args.latency else [])
        for n, latency in runs:
            calls, bodies = all_calls[:n], all_bodies[:n]
            repeats: dict[str, list[Result]] = {kind: [] for kind in (*TRANSPORTS, "naive")}
            for _ in range(args.repeat):  # interleaved, so a slow minute on a shared machine hits every client
                for kind, measured in repeats.items():
                    r = measure(kind, latency, args, calls, bodies, tmp)
                    measured.append(r)
                    print(f"  {kind:7s} N={n} L={latency:<4g} C={r.concurrency}: {r.rate:7.1f} calls/s (ideal {r.ideal:.0f}, {100 * r.rate / r.ideal:5.1f}%), "
                          f"client CPU {1000 * r.client_cpu_s / r.n:6.2f} ms/call, server CPU {1000 * r.server_cpu_s / r.n:5.2f} ms/call, ok {r.ok}/{r.n}")
            results.extend(Summary(measured) for measured in repeats.values())
        big = None
        if not args.skip_cached:
            print(f"cached re-run: writing {args.big_tasks} tasks / {args.big_criteria} criteria and scoring twice ...")
            big = cached_rerun(args, tmp)
            print(f"  job written in {big['setup_s']:.1f} s; first run {big['first_s']:.1f} s ({big['first_requests']} requests), "
                  f"cached re-run {big['cached_s']:.2f} s ({big['cached_requests']} requests), exit codes {big['exit_codes']}")
        prof = None if args.skip_profile else profile_engine(all_calls[:sizes[0]], args, tmp)

    if prof:
        print("\n== Profile (client side) ==")
        print(prof)
    print("\n== Summary ==")
    print(f"(the run with the median wall time of {args.repeat} per client; `ratio range` spans all {args.repeat})")
    header = (f"{'client':8s} {'N':>5s} {'C':>4s} {'L s':>5s} {'wall s':>7s} {'calls/s':>8s} {'ideal C/L':>9s} {'ratio':>6s} {'ratio range':>13s} "
              f"{'client CPU ms/call':>19s} {'server CPU ms/call':>19s}")
    print(header)
    print("-" * len(header))
    for summary in results:
        r, low, high = summary.median, summary.ratios[0], summary.ratios[-1]
        print(f"{r.name:8s} {r.n:5d} {r.concurrency:4d} {r.latency:5g} {r.wall_s:7.2f} {r.rate:8.1f} {r.ideal:9.0f} {r.rate / r.ideal:6.1%} "
              f"{f'{low:.1%}-{high:.1%}':>13s} {1000 * r.client_cpu_s / r.n:19.2f} {1000 * r.server_cpu_s / r.n:19.2f}")
    if big:
        calls_big = 3 * big["tasks"]
        print(f"\nIlluGenBench-sized job: {big['tasks']} tasks, {big['criteria']} criteria, {calls_big} per-dimension calls")
        print(f"  first run (fills cache, C={args.fill_concurrency}, L={args.fill_latency:g}): {big['first_s']:8.2f} s  ({big['first_requests']} HTTP requests)")
        print(f"  fully cached re-run:                       {big['cached_s']:8.2f} s  ({big['cached_requests']} HTTP requests)")


if __name__ == "__main__":
    main()
