"""Make `import torchvision` work when a CUDA build of torchvision sits on a CPU-only torch.

The registry's torchvision 0.28.0 is a CUDA build (`0.28.0+cu130`). Next to torch 2.13.0+cpu its
compiled ops (`torchvision/_C.so`, linked against libtorch_cuda) cannot load, and importing
torchvision then fails in `torchvision/_meta_registrations.py` with
`RuntimeError: operator torchvision::nms does not exist`: it registers fake kernels for
`torchvision::nms` and `torchvision::qnms` without checking that the ops exist. `transformers`
imports torchvision whenever it is installed, so bert-score breaks the same way.

`ensure_torchvision_importable()` defines just those two op schemas (no kernels) before
torchvision is first imported, and only on that exact mismatch: torch has no GPU support AND
torchvision's compiled ops fail to load. A healthy install is left untouched. Call it before any
import of torchvision, lpips, transformers or bert_score; it is cheap, idempotent and thread-safe.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from typing import Any

__all__ = ["ensure_torchvision_importable", "guard_applied"]

_lock = threading.Lock()
_checked = False
_applied = False
# The torch.library.Library must stay referenced: its finalizer removes what it defined.
_library: Any = None

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def guard_applied() -> bool:
    """Whether `ensure_torchvision_importable()` had to define the missing op schemas."""
    return _applied


def _torchvision_extension_path() -> str | None:
    """Where torchvision's compiled ops live (`_C` + the platform's extension suffix), found
    without importing torchvision; None when torchvision or its extension is not installed."""
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = os.path.join(folder, "_C" + suffix)
            if os.path.isfile(candidate):
                return candidate
    return None


def _ops_load(torch: Any, path: str) -> bool:
    """Load torchvision's compiled ops the way torchvision itself does on import
    (`torch.ops.load_library`); False when they cannot load (e.g. libtorch_cuda missing)."""
    try:
        torch.ops.load_library(path)
    except (OSError, ImportError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Apply the CPU-torch / CUDA-torchvision fix if, and only if, it is needed (see module doc)."""
    global _checked, _applied, _library
    if _checked:
        return
    with _lock:
        if _checked:
            return
        _checked = True
        if "torchvision" in sys.modules:
            return  # already imported (it worked, or it is too late to help)
        try:
            import torch
        except ImportError:
            return
        if getattr(torch.version, "cuda", None) or getattr(torch.version, "hip", None):
            return  # torch has GPU support: not the mismatch this guard is for
        path = _torchvision_extension_path()
        if path is None or _ops_load(torch, path):
            return  # no torchvision, or its compiled ops load fine: a healthy install
        library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            with contextlib.suppress(RuntimeError):  # already defined elsewhere: nothing to add
                library.define(schema)
        _library = library
        _applied = True
