"""Pace judge requests: when the next attempt may start.

`Pacer` spaces request starts no closer than the CPU one attempt costs this process (so answers
arrive spread out rather than in bunched waves) and no faster than `--rpm`. `_judging_cpu`
measures that CPU on the threads that judge only; `WARM_UP_FLOOR_S` is the spacing per
transport until the first answer is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

# The Pacer's spacing before the first answer, per transport. litellm builds each request on an
# executor thread that may not have run when the next start is due, so the CPU estimate starts
# late; 5 ms lets it catch up. `direct` builds requests on the loop, seen at the very next start.
WARM_UP_FLOOR_S = {"litellm": 0.005, "direct": 0.0}


class Pacer:
    """Spaces request starts: no faster than the process can handle answers, nor than --rpm.

    Request building and answer parsing (instructor and the transport: ~2.5 ms of CPU a call
    direct, ~11 ms through litellm) all run under one interpreter lock, and asyncio interleaves
    them round-robin. When a judge with a steady latency answers a whole wave of calls at once,
    each answer is finished only when the whole wave is, so every call waits for the wave's
    total CPU time and the waves stay bunched for good (through litellm: 67% of ideal
    throughput at 64 calls in flight and 1 s latency). Starting calls no closer together than
    the CPU one call costs spreads the answers out, so each is handled as it arrives and the
    next request leaves at once (~90%). The cap is the rate the process could handle anyway,
    so pacing costs no throughput.
    """

    # Decay per event of the CPU and event tallies: a horizon of a few hundred events, so the
    # estimate follows a run whose cost per call drifts but not the lumps of single events.
    SMOOTHING = 1 / 256

    def __init__(self, per_minute: float | None, warm_up_floor_s: float = 0.0, by_cpu: bool = True):
        """`by_cpu` False: only --rpm spaces the starts (no CPU clocks are read)."""
        self.rpm_interval = 60.0 / per_minute if per_minute else 0.0
        self.warm_up_floor_s = warm_up_floor_s
        self.by_cpu = by_cpu
        self._next = 0.0
        self._cpu_seen = _judging_cpu()
        self._cpu_tally = 0.0  # decayed sums: CPU seconds, and events that used them
        self._event_tally = 0.0
        self._finished = 0

    async def wait(self) -> None:
        """Wait for this attempt's start slot."""
        if not self.by_cpu and not self.rpm_interval:
            return
        self._observe()
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self.interval()
        if start > now:
            await asyncio.sleep(start - now)

    def finished(self) -> None:
        """An attempt has ended (answer, error or timeout)."""
        if self.by_cpu:
            self._observe()
        self._finished += 1

    def interval(self) -> float:
        # An attempt is two events, its start and its finish. A transport whose requests are built
        # off the event loop makes the estimate lag until answers come back; its floor gives the
        # estimate time to see what the first requests cost.
        cpu_per_attempt = 2 * self._cpu_tally / self._event_tally if self._event_tally and self.by_cpu else 0.0
        floor = self.warm_up_floor_s if not self._finished else 0.0
        return max(self.rpm_interval, cpu_per_attempt, floor)

    def _observe(self) -> None:
        # A ratio of decayed sums, not a moving average of per-event CPU: a request's sending
        # and its connection's setup run after its start event, so their CPU lands in lumps on
        # whichever event comes next (the first answer of a run carries the whole first wave's).
        # An average over events is skewed by such a lump for as long as it takes to forget it;
        # CPU over events counts each lump once, where it belongs.
        now = _judging_cpu()
        used, self._cpu_seen = max(0.0, now - self._cpu_seen), now
        keep = 1.0 - self.SMOOTHING
        self._cpu_tally = self._cpu_tally * keep + used
        self._event_tally = self._event_tally * keep + 1.0


def _judging_cpu() -> float:
    """CPU seconds of the threads that judge: this one (the event loop's) and the loop's default
    executor threads, where litellm builds requests. Not the whole process: the metrics thread
    and torch's threads may keep other cores busy, and counting them would slow judging down."""
    total = time.thread_time()
    for thread in threading.enumerate():
        # asyncio names its default executor's threads asyncio_0, asyncio_1, ...
        if thread.name.startswith("asyncio_") and thread.ident is not None:
            with contextlib.suppress(AttributeError, OSError):  # no per-thread clocks here, or it just ended
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total
