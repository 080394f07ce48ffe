"""The executor's start pacing: spacing follows the CPU an attempt costs, and --rpm still holds."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
import time

from rubric_judge.judge.pacing import Pacer


def _burn_cpu(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_spacing_follows_the_cpu_each_attempt_costs() -> None:
    pacer = Pacer(per_minute=None)
    assert pacer.interval() == 0.0  # nothing measured yet

    async def attempts() -> None:
        for _ in range(80):  # enough for the moving average to forget its start
            await pacer.wait()
            _burn_cpu(0.002)  # building and sending the request
            pacer.finished()
            _burn_cpu(0.002)  # parsing the answer, before the next start

    asyncio.run(attempts())
    # 4 ms of CPU an attempt, split over its two events; the pacer's own bookkeeping adds a little.
    assert 0.0035 <= pacer.interval() <= 0.006


def test_before_any_answer_starts_are_spaced_by_the_warm_up_floor() -> None:
    floor = 0.005
    pacer = Pacer(per_minute=None, warm_up_floor_s=floor)
    starts: list[float] = []

    async def starters() -> None:
        async def one() -> None:
            await pacer.wait()
            starts.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(5)))

    asyncio.run(starters())
    # The event loop may wake a sleeper slightly early, so the bound is on the whole spread.
    assert starts[-1] - starts[0] >= 4 * floor * 0.8


def test_requests_per_minute_is_a_lower_bound_on_spacing() -> None:
    pacer = Pacer(per_minute=1200)  # one start every 50 ms
    assert pacer.interval() == 0.05
    pacer.finished()
    assert pacer.interval() >= 0.05
    starts: list[float] = []

    async def starters() -> None:
        for _ in range(4):
            await pacer.wait()
            starts.append(time.monotonic())

    asyncio.run(starters())
    assert starts[-1] - starts[0] >= 3 * 0.05 * 0.9


def test_cpu_burnt_elsewhere_in_the_process_does_not_slow_starts() -> None:
    # Two threads hashing (hashlib lets go of the interpreter lock) keep the other cores busy,
    # as the metrics thread and torch do while judging runs alongside them.
    stop = threading.Event()

    def hash_forever() -> None:
        block = b"x" * 1_000_000
        while not stop.is_set():
            hashlib.sha256(block).digest()

    hashers = [threading.Thread(target=hash_forever, name=f"hasher-{i}") for i in range(2)]
    for thread in hashers:
        thread.start()
    try:
        test_spacing_follows_the_cpu_each_attempt_costs()
    finally:
        stop.set()
        for thread in hashers:
            thread.join()


def test_without_cpu_pacing_only_the_rpm_limit_spaces_starts() -> None:
    """The reward server's loop does other work per call, so it turns CPU pacing off: the same
    CPU-heavy attempts then start at once, while a requests-per-minute limit still holds."""
    unpaced, limited = Pacer(per_minute=None, by_cpu=False), Pacer(per_minute=600, by_cpu=False)  # 600/min: 0.1 s apart

    async def attempts(pacer: Pacer, count: int) -> list[float]:
        starts = []
        for _ in range(count):
            await pacer.wait()
            starts.append(time.monotonic())
            _burn_cpu(0.002)
            pacer.finished()
            _burn_cpu(0.002)
        return starts

    asyncio.run(attempts(unpaced, 40))
    assert unpaced.interval() == 0.0  # 4 ms of CPU an attempt, not counted
    starts = asyncio.run(attempts(limited, 4))
    assert all(later - earlier >= 0.095 for earlier, later in itertools.pairwise(starts))
