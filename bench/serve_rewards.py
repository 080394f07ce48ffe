"""Reward-server benchmark: `rubric-judge serve`'s app against a loopback judge with a fixed latency.

Sections, against one loopback judge served from a child process (so its event loop does not
share the server's CPU time):

1. Throughput (the server is `rubric-judge serve` in its own process): N concurrent single-item POST /get_reward requests (OpenRLHF's single-turn
   executor sends one sample per request), every item new; wall time, items/s, and the share
   of the ideal concurrency / latency reached.
2. The same N items again on a fresh cache with HTTP 429 on the first attempt of every judge
   request (Retry-After 0.1 s): all answered before the deadline, with the same rewards.
3. A repeated item (sequential requests): answered from the verdict cache, p50/p90 latency.

Figures are printed, never asserted; they depend on the machine (cores and load). Usage:

    .venv/bin/python bench/serve_rewards.py                      # 256 requests, 1 s latency
    .venv/bin/python bench/serve_rewards.py --requests 256 --latency 1.0 --repeats 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

RUBRIC = "builtin:medgen/holistic-with-gt.yaml"  # per_sample: one judge call per item
JUDGE = "openai/bench-judge"
SETTLE_S = 1.5  # > the serve log's batch window (serve/runlog.py BATCH_SECONDS)

_SERVER_CODE = r"""
import sys, threading
from rubric_judge.testing.loopback import Fault, LoopbackJudge
seen, lock = set(), threading.Lock()
def first_attempt_429(body, index):
    key = repr(body.get("messages"))
    with lock:
        if key in seen:
            return None
        seen.add(key)
    return Fault.http_429(retry_after_s=0.1)
server = LoopbackJudge(latency=float(sys.argv[1]))
if sys.argv[2] == "429":
    server.fault_rule = first_attempt_429
server.start()
print(server.base_url, flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        print(server.request_count, flush=True)
    elif line.strip() == "quit":
        break
server.stop()
"""


class Judge:
    """The loopback judge in a child process."""

    def __init__(self, latency: float, faults: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER_CODE, str(latency), faults], cwd=str(ROOT), env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"loopback judge did not start (got {self.base_url!r})")

    def requests(self) -> int:
        self.proc.stdin.write("count\n")
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(10)


class Server:
    """`rubric-judge serve` in a process of its own, as a trainer meets it: the benchmark's client
    does not share the server's interpreter."""

    def __init__(self, judge: Judge, workdir: Path, concurrency: int, deadline: float, profile: Path | None = None):
        import socket
        import urllib.request

        with socket.socket() as probe:  # a free port for the server
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cli = str(Path(sys.executable).with_name("rubric-judge"))
        # --profile: the server under cProfile (it writes the profile when SIGTERM stops uvicorn).
        prefix = [sys.executable, "-m", "cProfile", "-o", str(profile), cli] if profile else [cli]
        self.proc = subprocess.Popen(
            [*prefix, "serve", RUBRIC, "--judge", JUDGE, "--api-base", judge.base_url, "--transport", "direct", "--concurrency", str(concurrency),
             "--deadline", str(deadline), "--db", str(workdir / "serve.duckdb"), "--cache-dir", str(workdir / "cache"), "--model", "bench",
             "--port", str(port)],
            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{port}"
        self.profiled = profile is not None
        for _ in range(600):
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"rubric-judge serve exited: {self.proc.stderr.read()[-2000:]}") from None
                time.sleep(0.1)
        raise RuntimeError("rubric-judge serve did not answer /health within 60 s")

    def stop(self) -> None:
        # uvicorn re-raises the signal it stopped on; SIGINT ends the CLI with exit code 130 (a
        # normal exit, so cProfile writes its file), SIGTERM would kill it before it does.
        self.proc.send_signal(signal.SIGINT if self.profiled else signal.SIGTERM)
        self.proc.wait(60)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def label(index: int) -> str:
    return json.dumps({"rubric": "medgen/holistic-with-gt", "id": f"q{index}",
                       "inputs": {"category": "VQA", "instruction": f"Question {index}: what abnormality is visible?", "answer": "A left pleural effusion."}})


async def get_rewards(url: str, indices: list[int], tag: str = "", rounds: int = 1) -> tuple[list[float], list[float], float]:
    """Single-item /get_reward requests, one client per index, all at once; with `rounds` > 1
    each client sends its next request as soon as its answer comes (a closed loop, as a trainer's
    rollout workers do), item `index + k * len(indices)` in round k. (rewards, latencies, wall)."""
    import aiohttp

    async def one(session, index: int) -> tuple[float, float]:
        prompt = f"<user>Question {index}<assistant>"
        body = {"query": [prompt + f" Answer {index}{tag}: a left pleural effusion."], "prompts": [prompt], "labels": [label(index)]}
        started = time.perf_counter()
        async with session.post(f"{url}/get_reward", json=body) as response:
            answer = await response.json()
        assert answer["extra_logs"]["rubric_fallback"] == [0.0], answer
        return answer["rewards"][0], time.perf_counter() - started

    async def client(session, index: int) -> list[tuple[float, float]]:
        return [await one(session, index + k * len(indices)) for k in range(rounds)]

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        started = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(client(session, i) for i in indices)) for r in rs]
        wall = time.perf_counter() - started
    return [r for r, _ in results], [t for _, t in results], wall


async def repeated(url: str, count: int) -> list[float]:
    import aiohttp

    latencies = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            body = {"query": ["<user>Question 0<assistant> Answer 0: a left pleural effusion."], "prompts": ["<user>Question 0<assistant>"], "labels": [label(0)]}
            started = time.perf_counter()
            async with session.post(f"{url}/get_reward", json=body) as response:
                answer = await response.json()
            latencies.append(time.perf_counter() - started)
            assert answer["extra_logs"]["rubric_cached"] == [1.0], answer
    return latencies


def section(clients: int, latency: float, concurrency: int, faults: str, deadline: float,
            profile: Path | None = None, rounds: int = 1) -> tuple[list[float], float, int]:
    judge = Judge(latency, faults)
    with tempfile.TemporaryDirectory() as workdir:
        server = Server(judge, Path(workdir), concurrency, deadline, profile)
        try:
            asyncio.run(get_rewards(server.url, [10_000_000]))  # warm-up: first-call imports, the database opening
            before = judge.requests()
            cpu_before = cpu_seconds(server.proc.pid), cpu_seconds(judge.proc.pid), own_cpu_seconds()
            rewards, latencies, wall = asyncio.run(get_rewards(server.url, list(range(clients)), rounds=rounds))
            cpu_after = cpu_seconds(server.proc.pid), cpu_seconds(judge.proc.pid), own_cpu_seconds()
            calls = judge.requests() - before
            time.sleep(SETTLE_S)  # the server's database writes of the last items come after their answers
            server_settled = cpu_seconds(server.proc.pid) - cpu_before[0]
        finally:
            server.stop()
            judge.stop()
    requests = clients * rounds
    ideal = min(clients, concurrency) / latency
    server_cpu, judge_cpu, client_cpu = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    shape = f"{clients} clients x {rounds} rounds" if rounds > 1 else f"{requests} requests"
    print(f"  {shape}, concurrency {concurrency}, judge latency {latency:g} s, faults {faults}: wall {wall:.2f} s, "
          f"{requests / wall:.1f} items/s = {100 * requests / wall / ideal:.0f}% of concurrency/latency ({ideal:.0f}/s); "
          f"judge requests {calls}; item latency p50 {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s (deadline {deadline:g} s)")
    # The three processes share this machine's cores: a client or judge that eats them lowers the server's figure.
    print(f"    CPU during the run, ms per item: server {1000 * server_cpu / requests:.2f} ({1000 * server_settled / requests:.2f} with its "
          f"database writes {SETTLE_S:g} s after), loopback judge {1000 * judge_cpu / requests:.2f}, "
          f"bench client {1000 * client_cpu / requests:.2f} (total {server_cpu + judge_cpu + client_cpu:.2f} s of "
          f"{wall * (os.cpu_count() or 1):.2f} core-seconds in the wall time)")
    return rewards, wall, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=256, help="concurrent single-item requests (clients)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="requests each client sends one after another in section 1 (1: one burst, the acceptance figure; "
                             "more: sustained throughput, the burst's ramp-up spread over more items)")
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=150.0)
    parser.add_argument("--sections", type=int, nargs="+", choices=(1, 2, 3), default=[1, 2, 3], help="which sections to run")
    parser.add_argument("--profile", type=Path, help="run section 1's server under cProfile, writing FILE-<concurrency>.prof")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    plain = None
    if 1 in args.sections:
        print("1. throughput (every item new)")
        for concurrency in args.concurrency:
            profile = args.profile.with_name(f"{args.profile.name}-{concurrency}.prof") if args.profile else None
            rewards, _, _ = section(args.requests, args.latency, concurrency, "none", args.deadline, profile, args.rounds)
            plain = plain or rewards[:args.requests]
    if 2 in args.sections:
        print("2. HTTP 429 on the first attempt of every judge request")
        faulted, _, _ = section(args.requests, args.latency, max(args.concurrency), "429", args.deadline)
        if plain is not None:
            print(f"  same rewards as without faults: {faulted == plain} ({sum(a == b for a, b in zip(faulted, plain, strict=True))}/{len(plain)})")
    if 3 not in args.sections:
        return
    print("3. a repeated item, answered from the verdict cache")
    judge = Judge(args.latency, "none")
    with tempfile.TemporaryDirectory() as workdir:
        server = Server(judge, Path(workdir), max(args.concurrency), args.deadline)
        try:
            asyncio.run(get_rewards(server.url, [0]))  # judged once
            latencies = sorted(asyncio.run(repeated(server.url, args.repeats)))
        finally:
            server.stop()
            judge.stop()
    p50, p90 = statistics.median(latencies), latencies[int(0.9 * len(latencies))]
    print(f"  {args.repeats} sequential requests: p50 {1000 * p50:.1f} ms, p90 {1000 * p90:.1f} ms, max {1000 * latencies[-1]:.1f} ms")


if __name__ == "__main__":
    main()
