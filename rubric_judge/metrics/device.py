"""Pick the torch device for the neural metrics (LPIPS, BERTScore)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

__all__ = ["available_devices", "cpu_torch_threads", "resolve_device"]


def available_devices() -> list[str]:
    """Devices torch can use here, best first: "cuda:N"..., "mps", "cpu"."""
    import torch

    devices: list[str] = []
    if torch.cuda.is_available():
        devices.extend(f"cuda:{index}" for index in range(torch.cuda.device_count()))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def resolve_device(requested: str = "auto") -> str:
    """Resolve "auto" -> "cuda" if available, else "mps" if available, else "cpu". An explicit device
    ("cpu", "cuda", "cuda:1", "mps") is checked: one that is not available raises ValueError
    naming the devices that are."""
    wanted = (requested or "auto").strip().lower()
    available = available_devices()
    if wanted == "auto":
        if available[0].startswith("cuda"):
            return "cuda"
        return available[0]
    known = wanted in ("cpu", "cuda", "mps") or (wanted.startswith("cuda:") and wanted[5:].isdigit())
    if not known:
        raise ValueError(
            f"unknown device {requested!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (available here: {', '.join(available)})"
        )
    if wanted == "cpu":
        return "cpu"
    if wanted == "cuda" and any(device.startswith("cuda") for device in available):
        return "cuda"
    if wanted in available:
        return wanted
    raise ValueError(f"device {requested!r} is not available here; available: {', '.join(available)}")


# How long the CPU use of other processes is sampled before a CPU metric picks its thread count.
_SAMPLE_SECONDS = 0.1


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _busy_seconds(cpus: set[int]) -> float:
    """CPU time (seconds) these cores have been busy since boot, from /proc/stat's per-core
    lines (user, nice, system, irq, softirq, steal). Raises OSError where there is none."""
    tick = os.sysconf("SC_CLK_TCK")
    busy = 0
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or not name[3:].isdigit():
                continue
            if int(name[3:]) in cpus:
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in rest.split()[:8])
                busy += user + nice + system + irq + softirq + steal
    return busy / tick


def _busy_elsewhere(cpus: set[int]) -> float:
    """Cores' worth of CPU that other processes are using now: the cores' busy time over the
    next _SAMPLE_SECONDS minus this process's own CPU time (all its threads), per second. Where
    /proc/stat is not there (not Linux), the 1-minute load average, which lags: a job that ended
    a minute ago still counts."""
    try:
        busy, own, start = _busy_seconds(cpus), time.process_time(), time.monotonic()
        time.sleep(_SAMPLE_SECONDS)
        busy, own, elapsed = _busy_seconds(cpus) - busy, time.process_time() - own, time.monotonic() - start
        return max(0.0, (busy - own) / elapsed)
    except (OSError, ValueError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def _idle_cores() -> int:
    """Cores this process may use that other processes are not keeping busy now: the cores in
    its affinity mask minus what others use (`_busy_elsewhere`), at least 1."""
    cpus = _affinity()
    return max(1, min(len(cpus), int(len(cpus) - _busy_elsewhere(cpus) + 0.5)))


@contextlib.contextmanager
def cpu_torch_threads(device: str) -> Iterator[int]:
    """Run a CPU metric with no more torch threads than there are idle cores, and say how many.

    torch starts one OpenMP thread per core. When other processes keep those cores busy, its
    threads spin waiting for each other: on a shared 2-core machine BERTScore and LPIPS took
    2-3x the CPU time, and more wall time, with 2 threads than with 1. What others use is
    measured over 0.1 s, not read from the load average, which still counts a job that ended a
    minute ago (on an idle 2-core machine, LPIPS took 3.8 s with the one thread it left instead
    of 2.3 s). The count is restored afterwards. An explicit OMP_NUM_THREADS (or a GPU device)
    is left alone.

    Args:
        device: the resolved device ("cpu", "cuda", ...).

    Yields:
        The torch thread count in effect.
    """
    import torch

    before = torch.get_num_threads()
    if device != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        yield before
        return
    wanted = min(before, _idle_cores()) if before > 1 else before  # one thread: nothing to measure
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if wanted != before:
            torch.set_num_threads(before)
