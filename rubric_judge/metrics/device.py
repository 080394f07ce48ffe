"""Pick the torch device for the neural metrics (LPIPS, BERTScore)."""

from __future__ import annotations

__all__ = ["available_devices", "resolve_device"]


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
