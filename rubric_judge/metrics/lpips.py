"""LPIPS: loading the model from local weights (never downloading) and scoring batches of pairs.

The model is the lpips package's linear layers on a torchvision trunk whose ImageNet weights are
read from a local file: ``<torch hub dir>/checkpoints/<trunk file>`` by default, or an explicit
trunk or full LPIPS state dict. Missing or unreadable weights raise MetricUnavailable with what
to do. torch and lpips are imported only when a model is loaded.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rubric_judge.metrics.types import MetricUnavailable

# torchvision's ImageNet trunk checkpoints, as torch.hub stores them under <hub dir>/checkpoints/.
LPIPS_TRUNK_FILES: dict[str, str] = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
_TRUNK_URLS: dict[str, str] = {name: f"https://download.pytorch.org/models/{file}" for name, file in LPIPS_TRUNK_FILES.items()}

_model_lock = threading.Lock()
_models: dict[tuple[str, str, str], Any] = {}


def default_lpips_trunk_path(net: str = "alex") -> Path:
    """Where torchvision/lpips look for the trunk weights: ``<torch hub dir>/checkpoints/<file>``
    (``$TORCH_HOME/hub/checkpoints`` when TORCH_HOME is set)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_TRUNK_FILES[net]


def _unavailable_message(net: str, path: Path, explicit: bool) -> str:
    if explicit:
        return f"LPIPS weights file not found: {path} (lpips_weights); give an existing torchvision '{net}' trunk state dict or a full LPIPS state dict"
    return (
        f"LPIPS trunk weights not found: {path}. No download is attempted while scoring: run `rubric-judge weights --download`, "
        f"or place the torchvision '{net}' ImageNet checkpoint there (from {_TRUNK_URLS[net]}), or set TORCH_HOME to a folder whose hub/checkpoints holds it"
    )


def load_lpips_model(net: str = "alex", weights: Path | None = None, device: str = "cpu") -> Any:
    """The LPIPS module (lpips package linear layers + trunk weights from a local file), built
    once per process per (net, weights file, device). Never downloads: missing weights raise
    MetricUnavailable naming the file and how to provide it."""
    path = Path(weights).expanduser() if weights is not None else default_lpips_trunk_path(net)
    key = (net, str(path.resolve() if path.exists() else path), device)
    with _model_lock:
        model = _models.get(key)
        if model is not None:
            return model
        if not path.is_file():
            raise MetricUnavailable(_unavailable_message(net, path, weights is not None))
        from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

        ensure_torchvision_importable()
        try:
            import lpips
            import torch
        except ImportError as exc:
            raise MetricUnavailable(
                f"LPIPS needs the torch, torchvision and lpips packages ({exc}); pip install 'rubric-judge[metrics]'"
            ) from exc
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MetricUnavailable(f"LPIPS weights file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise MetricUnavailable(f"LPIPS weights file {path} does not hold a state dict")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation notices for `pretrained=`
            # pnet_rand=True: the trunk starts random (no hub download); its weights come from `path`.
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        try:
            if any(name.startswith("net.") for name in state):
                model.load_state_dict(state, strict=True)
            else:
                trunk_state = {}
                for name in model.net.state_dict():
                    _, rest = name.split(".", 1)  # "slice2.3.weight" -> features.3.weight
                    trunk_state[name] = state[f"features.{rest}"]
                model.net.load_state_dict(trunk_state, strict=True)
        except (KeyError, RuntimeError) as exc:
            raise MetricUnavailable(f"LPIPS weights file {path} does not match the '{net}' trunk: {type(exc).__name__}: {exc}") from exc
        model = model.eval().to(device)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        _models[key] = model
        return model


def lpips_values(model: Any, outs: Sequence[np.ndarray], refs: Sequence[np.ndarray], signed: bool, device: str) -> list[float]:
    """LPIPS for a batch of same-sized pairs, one trunk forward over outputs and references
    together; the same arithmetic as ``lpips.LPIPS.forward``."""
    import lpips
    import torch

    count = len(outs)
    batch = torch.from_numpy(np.stack([*outs, *refs])).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if signed:
        batch = batch * 2 - 1
    features = model.net.forward(model.scaling_layer(batch))
    total = None
    for layer, feature in enumerate(features):
        normalized = lpips.normalize_tensor(feature)
        diff = (normalized[:count] - normalized[count:]) ** 2
        value = model.lins[layer](diff).mean([2, 3], keepdim=True)
        total = value if total is None else total + value
    assert total is not None
    return [float(v) for v in total.flatten().cpu().tolist()]

