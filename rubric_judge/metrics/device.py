"""Pick the torch device for the neural metrics (LPIPS, BERTScore)."""

from __future__ import annotations

import contextlib
import os
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


def _idle_cores() -> int:
    """Cores this process may use that other processes are not keeping busy: the cores in its
    affinity mask minus the 1-minute load average, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


@contextlib.contextmanager
def cpu_torch_threads(device: str) -> Iterator[int]:
    """Run a CPU metric with no more torch threads than there are idle cores, and say how many.

    torch starts one OpenMP thread per core. When other processes keep those cores busy, its
    threads spin waiting for each other: on a shared 2-core machine BERTScore and LPIPS took
    2-3x the CPU time, and more wall time, with 2 threads than with 1. The count is restored
    afterwards. An explicit OMP_NUM_THREADS (or a GPU device) is left alone.

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
    wanted = min(before, _idle_cores())
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if wanted != before:
            torch.set_num_threads(before)
