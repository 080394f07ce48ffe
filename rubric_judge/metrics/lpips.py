"""LPIPS: loading the model from local weights (never downloading) and scoring batches of pairs.

The model is the lpips package's linear layers on a torchvision trunk whose ImageNet weights are
read from a local file: ``<torch hub dir>/checkpoints/<trunk file>`` by default, or an explicit
trunk or full LPIPS state dict. Missing or unreadable weights raise MetricUnavailable with what
to do. torch and lpips are imported only when a model is loaded.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from collections import OrderedDict
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
        try:
            import torch
        except ImportError as exc:
            raise MetricUnavailable(f"LPIPS needs torch ({exc}); pip install 'rubric-judge[metrics]'") from exc
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MetricUnavailable(f"LPIPS weights file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise MetricUnavailable(f"LPIPS weights file {path} does not hold a state dict")
        model = _alex_lpips(torch) if net == "alex" else _package_lpips(net)
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


def _package_lpips(net: str) -> Any:
    """`lpips.LPIPS(net=net)` with a random trunk (its weights are loaded from the local file next)."""
    from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

    ensure_torchvision_importable()
    try:
        import lpips
    except ImportError as exc:
        raise MetricUnavailable(
            f"LPIPS needs the torch, torchvision and lpips packages ({exc}); pip install 'rubric-judge[metrics]'"
        ) from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notices for `pretrained=`
        # pnet_rand=True: the trunk starts random (no hub download); its weights come from the file.
        return lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)


def _lpips_linear_weights(net: str) -> Path:
    """The lpips package's learned linear layers (weights/v0.1/<net>.pth), found without importing
    the package (its import pulls in torchvision's model zoo and torch._dynamo: seconds)."""
    spec = importlib.util.find_spec("lpips")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / "weights" / "v0.1" / f"{net}.pth"
        if candidate.is_file():
            return candidate
    raise MetricUnavailable(f"LPIPS needs the lpips package's linear-layer weights (weights/v0.1/{net}.pth); pip install 'rubric-judge[metrics]'")


def _alex_lpips(torch: Any) -> Any:
    """`lpips.LPIPS(net="alex")` built from torch.nn alone: the same modules under the same state
    dict names (scaling_layer, net.slice1-5 = torchvision's AlexNet `features` split after each
    ReLU, lin0-4 = dropout + 1x1 conv, and `lins`), with the lpips package's linear weights.
    Importing lpips would import torchvision's model zoo, which costs seconds per process."""
    nn = torch.nn

    def sequential(layers: dict[str, Any]) -> Any:
        return nn.Sequential(OrderedDict(layers))

    class ScalingLayer(nn.Module):  # lpips.ScalingLayer
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("shift", torch.Tensor([-0.030, -0.088, -0.188])[None, :, None, None])
            self.register_buffer("scale", torch.Tensor([0.458, 0.448, 0.450])[None, :, None, None])

        def forward(self, inp: Any) -> Any:
            return (inp - self.shift) / self.scale

    class AlexTrunk(nn.Module):  # lpips.pretrained_networks.alexnet
        def __init__(self) -> None:
            super().__init__()
            self.slice1 = sequential({"0": nn.Conv2d(3, 64, 11, stride=4, padding=2), "1": nn.ReLU(inplace=True)})
            self.slice2 = sequential({"2": nn.MaxPool2d(3, 2), "3": nn.Conv2d(64, 192, 5, padding=2), "4": nn.ReLU(inplace=True)})
            self.slice3 = sequential({"5": nn.MaxPool2d(3, 2), "6": nn.Conv2d(192, 384, 3, padding=1), "7": nn.ReLU(inplace=True)})
            self.slice4 = sequential({"8": nn.Conv2d(384, 256, 3, padding=1), "9": nn.ReLU(inplace=True)})
            self.slice5 = sequential({"10": nn.Conv2d(256, 256, 3, padding=1), "11": nn.ReLU(inplace=True)})

        def forward(self, x: Any) -> list[Any]:
            outputs = []
            for block in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
                x = block(x)
                outputs.append(x)
            return outputs

    class AlexLPIPS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scaling_layer = ScalingLayer()
            self.net = AlexTrunk()
            for index, channels in enumerate((64, 192, 384, 256, 256)):
                setattr(self, f"lin{index}", sequential({"model": sequential({"0": nn.Dropout(), "1": nn.Conv2d(channels, 1, 1, bias=False)})}))
            self.lins = nn.ModuleList([getattr(self, f"lin{index}") for index in range(5)])

    model = AlexLPIPS()
    linear = torch.load(_lpips_linear_weights("alex"), map_location="cpu", weights_only=True)
    model.load_state_dict(linear, strict=False)  # as lpips.LPIPS loads them: only the lin* entries
    return model


def lpips_values(model: Any, outs: Sequence[np.ndarray], refs: Sequence[np.ndarray], signed: bool, device: str) -> list[float]:
    """LPIPS for a batch of same-sized pairs, one trunk forward over outputs and references
    together; the same arithmetic as ``lpips.LPIPS.forward``."""
    import torch

    count = len(outs)
    batch = torch.from_numpy(np.stack([*outs, *refs])).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if signed:
        batch = batch * 2 - 1
    features = model.net.forward(model.scaling_layer(batch))
    total = None
    for layer, feature in enumerate(features):
        normalized = feature / (torch.sqrt(torch.sum(feature**2, dim=1, keepdim=True)) + 1e-10)  # lpips.normalize_tensor
        diff = (normalized[:count] - normalized[count:]) ** 2
        value = model.lins[layer](diff).mean([2, 3], keepdim=True)
        total = value if total is None else total + value
    assert total is not None
    return [float(v) for v in total.flatten().cpu().tolist()]

