"""Reward-server benchmark: `rubric-judge serve` against a loopback judge with a fixed latency.

Three processes: the server (`rubric-judge serve`, as a trainer meets it), the loopback judge
(its own event loop), and this bench's client (raw asyncio HTTP/1.1 keep-alive connections,
about half the CPU of aiohttp's client; `--client aiohttp` to compare). They share the
machine's cores, so each section also prints every process's CPU per item, the share the
hypervisor stole, and how long the server's threads waited for a core.

1. Throughput: N concurrent single-item POST /get_reward requests (OpenRLHF's single-turn
   executor sends one sample per request), every item new; wall time, items/s, and the share
   of the ideal concurrency / latency reached. `--rounds R` makes each of the N clients send R
   requests one after another (sustained load; the one-burst ramp-up is spread over R rounds).
   Two figures beside it say where the rest goes: the ceiling, the same judge requests sent
   straight from this client to the loopback judge with no server between (the judge and the
   client need CPU too, on the same cores), and the reward service in this process without
   HTTP (`RewardService.score`, what uvicorn and Starlette add is the difference).
2. The same N items again on a fresh cache with HTTP 429 on the first attempt of every judge
   request (Retry-After 0.1 s): all answered before the deadline, with the same rewards.
3. A repeated item (sequential requests): answered from the verdict cache, p50/p90 latency.

Figures are printed, never asserted; they depend on the machine (cores and load). Usage:

    .venv/bin/python bench/serve_rewards.py                      # 256 requests, 1 s latency
    .venv/bin/python bench/serve_rewards.py --requests 256 --latency 1.0 --repeats 200
    .venv/bin/python bench/serve_rewards.py --sections 1 --concurrency 256 --rounds 8
    .venv/bin/python bench/serve_rewards.py --sections 1 --profile /tmp/serve   # server under cProfile
    .venv/bin/python bench/serve_rewards.py --sections 1 --concurrency 256 --servers 2   # scale-out: 2 servers, 128 clients each
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

_SERVER_CODE = r"""
import json, sys, threading
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
    elif line.strip() == "last":
        print(json.dumps(server.requests[-1]), flush=True)
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

    def last_request(self) -> dict:
        """The body of the last chat completion the judge was sent."""
        self.proc.stdin.write("last\n")
        return json.loads(self.proc.stdout.readline())

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


def waiting_seconds(pid: int) -> float:
    """Seconds the process's threads have spent runnable but waiting for a core (the kernel's
    run-queue delay, /proc/PID/task/*/schedstat), summed over its threads: time the server had
    work to do while the cores ran something else (other programs, the judge, the client, or
    the server's own other threads)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9


def machine_ticks() -> tuple[int, int]:
    """(all, stolen) clock ticks of the machine so far, from /proc/stat: on a virtual machine the
    hypervisor's "steal" is time the cores were runnable but given to another guest."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values[:8]), (values[7] if len(values) > 7 else 0)


def http_stack() -> str:
    """Which HTTP parser and event loop uvicorn's "auto" picks in the server (same interpreter)."""
    import importlib.util

    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn with {parser} and {loop}"


def own_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def label(index: int) -> str:
    return json.dumps({"rubric": "medgen/holistic-with-gt", "id": f"q{index}",
                       "inputs": {"category": "VQA", "instruction": f"Question {index}: what abnormality is visible?", "answer": "A left pleural effusion."}})


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the bench's client shares the
    machine's cores with the server, and aiohttp's client costs about 1 ms of CPU a request,
    this about half of that (`--client aiohttp` measures with aiohttp's)."""

    def __init__(self, url: str):
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict) -> dict:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:] if line)}
        answer = await self.reader.readexactly(int(headers["content-length"]))
        if head[0].split()[1] != "200":
            raise RuntimeError(f"{path}: {head[0]}: {answer[:500]!r}")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return json.loads(answer)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


class AiohttpConnection:
    """The same requests through aiohttp's client (one shared session)."""

    def __init__(self, url: str, session):
        self.url, self.session = url, session

    async def post(self, path: str, payload: dict) -> dict:
        async with self.session.post(self.url + path, json=payload) as response:
            response.raise_for_status()
            return await response.json()

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def connections_to(url: str, kind: str):
    """A factory of connections of the client `kind` (raw | aiohttp) to `url`."""
    if kind == "raw":
        yield lambda: RawConnection(url)
        return
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=600)) as session:
        yield lambda: AiohttpConnection(url, session)


def reward_request(index: int, tag: str = "") -> dict:
    prompt = f"<user>Question {index}<assistant>"
    return {"query": [prompt + f" Answer {index}{tag}: a left pleural effusion."], "prompts": [prompt], "labels": [label(index)]}


async def get_rewards(url: str | list[str], indices: list[int], tag: str = "", rounds: int = 1, client: str = "raw") -> tuple[list[float], list[float], float]:
    """Single-item /get_reward requests, one client per index, all at once; with `rounds` > 1
    each client sends its next request as soon as its answer comes (a closed loop, as a trainer's
    rollout workers do), item `index + k * len(indices)` in round k. Given several server URLs,
    the clients are split into as many contiguous shares, one per server, as OpenRLHF splits a
    batch over its comma-separated `--remote_rm_url`. (rewards, latencies, wall)."""
    urls = [url] if isinstance(url, str) else url

    async def one(connection, index: int) -> tuple[float, float]:
        started = time.perf_counter()
        answer = await connection.post("/get_reward", reward_request(index, tag))
        assert answer["extra_logs"]["rubric_fallback"] == [0.0], answer
        return answer["rewards"][0], time.perf_counter() - started

    async def run_client(connect, index: int) -> list[tuple[float, float]]:
        connection = connect()
        try:
            return [await one(connection, index + k * len(indices)) for k in range(rounds)]
        finally:
            await connection.close()

    async with contextlib.AsyncExitStack() as stack:
        connects = [await stack.enter_async_context(connections_to(u, client)) for u in urls]
        share = -(-len(indices) // len(urls))  # clients per server, rounded up
        started = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(run_client(connects[n // share], i) for n, i in enumerate(indices))) for r in rs]
        wall = time.perf_counter() - started
    return [r for r, _ in results], [t for _, t in results], wall


def settle_seconds() -> float:
    """How long after a run the server may still write its log: the serve log's batch window."""
    try:
        from rubric_judge.serve.runlog import BATCH_SECONDS
    except ImportError:
        return 2.0
    return BATCH_SECONDS + 0.5


async def repeated(url: str, count: int, client: str = "raw") -> list[float]:
    latencies = []
    async with connections_to(url, client) as connect:
        connection = connect()
        for _ in range(count):
            started = time.perf_counter()
            answer = await connection.post("/get_reward", reward_request(0))
            latencies.append(time.perf_counter() - started)
            assert answer["extra_logs"]["rubric_cached"] == [1.0], answer
        await connection.close()
    return latencies


async def judge_alone(base_url: str, body: dict, requests: int, connections: int, client: str = "raw") -> float:
    """`requests` copies of one judge request sent straight to the judge over `connections`
    keep-alive connections at once, each sending its next as soon as its answer comes; the
    wall time. No server is between: what any server could reach with this judge and client."""
    pending = iter(range(requests))

    async def run(connection) -> None:
        try:
            for _ in pending:  # shared: a connection takes the next request as soon as it is free
                await connection.post("/v1/chat/completions", body)
        finally:
            await connection.close()

    async with connections_to(base_url.removesuffix("/v1"), client) as connect:
        started = time.perf_counter()
        await asyncio.gather(*(run(connect()) for _ in range(connections)))
        return time.perf_counter() - started


async def service_in_process(judge: Judge, workdir: Path, clients: int, concurrency: int, deadline: float, rounds: int) -> float:
    """The same /get_reward items through `RewardService.score` in this process (no HTTP), after
    the same one-item warm-up as the server's; the wall time."""
    from rubric_judge.serve.app import openrlhf_item
    from rubric_judge.serve.service import RewardService

    def item(index: int):
        request = reward_request(index)
        return openrlhf_item(request["query"][0], request["prompts"][0], request["labels"][0], 0)

    async with RewardService([RUBRIC], judge=JUDGE, api_base=judge.base_url, transport="direct", concurrency=concurrency, deadline=deadline,
                             db=workdir / "in-process.duckdb", cache_dir=workdir / "in-process-cache", model="bench") as service:
        await service.score([item(10_000_000)])

        async def run_client(index: int) -> None:
            for k in range(rounds):
                [result] = await service.score([item(index + k * clients)])
                assert not result.fallback, result

        started = time.perf_counter()
        await asyncio.gather(*(run_client(i) for i in range(clients)))
        return time.perf_counter() - started


def bounds(clients: int, latency: float, concurrency: int, deadline: float, rounds: int, client: str) -> float:
    """Print the ceiling (the judge alone) and the service without HTTP, for section 1; the
    ceiling's wall time."""
    requests, ideal = clients * rounds, min(clients, concurrency) / latency
    judge = Judge(latency, "none")
    try:
        with tempfile.TemporaryDirectory() as workdir:
            in_process = asyncio.run(service_in_process(judge, Path(workdir), clients, concurrency, deadline, rounds))
        body = judge.last_request()
        alone = asyncio.run(judge_alone(judge.base_url, body, requests, min(clients, concurrency), client))
    finally:
        judge.stop()
    print(f"  ceiling: the loopback judge alone, the same {requests} judge requests straight from this client over {min(clients, concurrency)} "
          f"connections: wall {alone:.2f} s = {100 * requests / alone / ideal:.0f}% of concurrency/latency")
    print(f"  the reward service in this process, without HTTP: wall {in_process:.2f} s = {100 * requests / in_process / ideal:.0f}%")
    return alone


def section(clients: int, latency: float, concurrency: int, faults: str, deadline: float,
            profile: Path | None = None, rounds: int = 1, client: str = "raw", ceiling: float | None = None,
            servers: int = 1) -> tuple[list[float], float, int]:
    """One run of the server (or of `servers` servers, each given its share of the clients and a
    `concurrency` of its own) against a fresh judge; `ceiling`: the judge-alone wall time of the
    same requests, to print the share of it reached."""
    judge = Judge(latency, faults)
    running: list[Server] = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for number in range(servers):
                (Path(workdir) / str(number)).mkdir()
                running.append(Server(judge, Path(workdir) / str(number), concurrency, deadline, profile if number == 0 else None))
            urls = [server.url for server in running]
            for url in urls:  # warm-up: first-call imports, the database opening
                asyncio.run(get_rewards(url, [10_000_000], client=client))
            pids = [server.proc.pid for server in running]
            before = judge.requests()
            cpu_before = sum(map(cpu_seconds, pids)), cpu_seconds(judge.proc.pid), own_cpu_seconds()
            ticks_before, waited_before = machine_ticks(), sum(map(waiting_seconds, pids))
            rewards, latencies, wall = asyncio.run(get_rewards(urls, list(range(clients)), rounds=rounds, client=client))
            cpu_after = sum(map(cpu_seconds, pids)), cpu_seconds(judge.proc.pid), own_cpu_seconds()
            ticks_after, server_waited = machine_ticks(), sum(map(waiting_seconds, pids)) - waited_before
            calls = judge.requests() - before
            time.sleep(settle_seconds())  # the server's database writes of the last items come after their answers
            server_settled = sum(map(cpu_seconds, pids)) - cpu_before[0]
        finally:
            for server in running:
                server.stop()
            judge.stop()
    requests = clients * rounds
    server_cpu, judge_cpu, client_cpu = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    shape = f"{clients} clients x {rounds} rounds" if rounds > 1 else f"{requests} requests"
    shape += f" over {servers} servers" if servers > 1 else ""
    ideal = min(clients, concurrency * servers) / latency
    print(f"  {shape}, concurrency {concurrency}{' each' if servers > 1 else ''}, judge latency {latency:g} s, faults {faults}: wall {wall:.2f} s, "
          f"{requests / wall:.1f} items/s = {100 * requests / wall / ideal:.0f}% of concurrency/latency ({ideal:.0f}/s"
          f"{f'; {100 * ceiling / wall:.0f}% of the ceiling' if ceiling else ''}); "
          f"judge requests {calls}; item latency p50 {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s (deadline {deadline:g} s)")
    # The three processes share this machine's cores: a client or judge that eats them lowers the server's figure.
    print(f"    CPU during the run, ms per item: server{'s' if servers > 1 else ''} {1000 * server_cpu / requests:.2f} ({1000 * server_settled / requests:.2f} with {'their' if servers > 1 else 'its'} "
          f"database writes {settle_seconds():g} s after), loopback judge {1000 * judge_cpu / requests:.2f}, "
          f"bench client {1000 * client_cpu / requests:.2f} (total {server_cpu + judge_cpu + client_cpu:.2f} s of "
          f"{wall * (os.cpu_count() or 1):.2f} core-seconds in the wall time; "
          f"stolen by the hypervisor: {100 * (ticks_after[1] - ticks_before[1]) / max(1, ticks_after[0] - ticks_before[0]):.0f}%)")
    owner = "servers'" if servers > 1 else "server's"
    print(f"    the {owner} threads waited {server_waited:.2f} s in all for a core (run-queue delay: behind other programs, the judge, "
          f"the client or each other; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
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
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="the bench's HTTP client: raw asyncio streams (lean) or aiohttp's client")
    parser.add_argument("--sections", type=int, nargs="+", choices=(1, 2, 3), default=[1, 2, 3], help="which sections to run")
    parser.add_argument("--servers", type=int, default=1,
                        help="section 1 only: run this many servers and split the clients among them, as OpenRLHF splits a batch "
                             "over comma-separated reward URLs (scale-out on one machine)")
    parser.add_argument("--profile", type=Path, help="run section 1's server under cProfile, writing FILE-<concurrency>.prof")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}; server: {http_stack()}; client: {args.client}")
    plain = None
    if 1 in args.sections:
        print("1. throughput (every item new)")
        for concurrency in args.concurrency:
            # With several servers, the ceiling and the in-process service get all their concurrency.
            ceiling = bounds(args.requests, args.latency, concurrency * args.servers, args.deadline, args.rounds, args.client)
            profile = args.profile.with_name(f"{args.profile.name}-{concurrency}.prof") if args.profile else None
            rewards, _, _ = section(args.requests, args.latency, concurrency, "none", args.deadline, profile, args.rounds, args.client, ceiling,
                                    args.servers)
            plain = plain or rewards[:args.requests]
    if 2 in args.sections:
        print("2. HTTP 429 on the first attempt of every judge request")
        faulted, _, _ = section(args.requests, args.latency, max(args.concurrency), "429", args.deadline, client=args.client)
        if plain is not None:
            print(f"  same rewards as without faults: {faulted == plain} ({sum(a == b for a, b in zip(faulted, plain, strict=True))}/{len(plain)})")
    if 3 not in args.sections:
        return
    print("3. a repeated item, answered from the verdict cache")
    judge = Judge(args.latency, "none")
    with tempfile.TemporaryDirectory() as workdir:
        server = Server(judge, Path(workdir), max(args.concurrency), args.deadline)
        try:
            asyncio.run(get_rewards(server.url, [0], client=args.client))  # judged once
            latencies = sorted(asyncio.run(repeated(server.url, args.repeats, args.client)))
        finally:
            server.stop()
            judge.stop()
    p50, p90 = statistics.median(latencies), latencies[int(0.9 * len(latencies))]
    print(f"  {args.repeats} sequential requests: p50 {1000 * p50:.1f} ms, p90 {1000 * p90:.1f} ms, max {1000 * latencies[-1]:.1f} ms")


if __name__ == "__main__":
    main()
