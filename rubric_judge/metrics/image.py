"""SSIM, PSNR and LPIPS between model output images and ground-truth images, many pairs at once.

Two presets:

* ``medgen`` reproduces the MedGEN-Bench reference code (``util/metrics.py::FR_IQA`` in
  yangjj007/MedGEN-Bench-eval, with images opened as ``Image.open(p).convert("RGB")`` by its
  ``eval.py``):
  - both images are converted to 8-bit RGB with PIL's ``convert("RGB")``;
  - an output whose size differs from the ground truth is resized to the ground-truth size with
    PIL ``Image.resize(..., LANCZOS)`` (what the reference does; ``resize_filter`` changes it);
  - SSIM: ``skimage.metrics.structural_similarity`` on PIL ``convert("L")`` grayscale,
    ``data_range=255``, scikit-image defaults otherwise (7x7 uniform window, sample covariance);
  - PSNR on the 8-bit RGB arrays with peak 255; identical images give 100.0;
  - LPIPS: torchvision ``Resize((256, 256))`` on the PIL image (= PIL bilinear) and
    ``ToTensor()``, fed to ``lpips.LPIPS(net="alex")`` *without* ``normalize=True``: the reference
    passes [0, 1] tensors where LPIPS expects [-1, 1] (its comment assumes LPIPS rescales inputs
    itself; it does not). ``lpips_input="unit"`` reproduces that and is the medgen default;
    ``lpips_input="signed"`` scales to [-1, 1] (the LPIPS convention).
* ``standard``: SSIM with an 11x11 Gaussian window (sigma 1.5) on the RGB channels, population
  covariance, data range 255 (the Wang et al. settings); PSNR as above; LPIPS inputs in [-1, 1],
  at ``lpips_size`` (``None``: native size).

The numbers are the reference's, computed faster: SSIM from exact integer box sums (uniform
window) or separable float64 filtering (Gaussian window) batched over pairs of equal size, PSNR
from exact integer squared errors, each image decoded once, the LPIPS model loaded once per
process. Per-sample statuses instead of silent numbers: a missing or unreadable output is
"missing_output", an unreadable reference, an image over the pixel limit
(``rubric_judge.imageio.max_image_pixels``) or a size mismatch (``resize_output=False``) is
"error", and LPIPS is
"unavailable" for every sample when its trunk weights are not on disk (no download is attempted).
The reference scored a failed metric as 0; this module never does.

This module is the entry point (options, per-pair statuses, threads and batching); the work is in
``image_io`` (decoding and resizing a pair), ``pixel`` (the SSIM and PSNR kernels) and ``lpips``
(loading the LPIPS model from local weights and its batched forward).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rubric_judge.metrics.image_io import RESAMPLE_FILTERS, Prepared, prepare
from rubric_judge.metrics.lpips import LPIPS_TRUNK_FILES, default_lpips_trunk_path, load_lpips_model, lpips_values
from rubric_judge.metrics.pixel import psnr, ssim_gaussian, ssim_uniform
from rubric_judge.metrics.types import MetricUnavailable, MetricValue

__all__ = [
    "IMAGE_METRICS",
    "LPIPS_TRUNK_FILES",
    "ImageMetricOptions",
    "compute_image_metrics",
    "default_lpips_trunk_path",
    "load_lpips_model",
    "psnr",
    "ssim_gaussian",
    "ssim_uniform",
]

IMAGE_METRICS: tuple[str, ...] = ("ssim", "psnr", "lpips")

_CHUNK_PAIRS = 16  # pairs decoded at once: bounds memory, feeds the LPIPS batches
_CUDA_LPIPS_BATCH = 32
_CPU_LPIPS_BATCH = 8  # pairs per forward on CPU (16 images): measured best of 1/4/8 on 2 cores
_MAX_PREP_WORKERS = 8


@dataclass(frozen=True)
class ImageMetricOptions:
    """How the image metrics are computed; see the module doc for the two presets.

    preset: "medgen" (MedGEN-Bench reference) or "standard".
    lpips_net: LPIPS trunk.
    lpips_size: LPIPS inputs resized (PIL bilinear, as torchvision's Resize on a PIL image) to
        lpips_size x lpips_size; None: native size. Honoured under both presets.
    resize_output: resize an output whose size differs from the ground truth to the ground-truth
        size; False: such a pair is an "error" for every metric.
    lpips_weights: an explicit weights file: a torchvision trunk state dict (``features.*``, like
        the hub's ``alexnet-owt-7be5be79.pth``) or a full LPIPS state dict (``net.*`` + ``lin*``).
        Default: ``<torch hub dir>/checkpoints/<trunk file>`` (``$TORCH_HOME/hub/checkpoints``).
    resize_filter: PIL filter for resize_output; the reference uses LANCZOS.
    lpips_input: "unit" feeds [0, 1] tensors unscaled (what the MedGEN-Bench code does), "signed"
        scales to [-1, 1]; None: the preset's choice (medgen "unit", standard "signed").
    high_bit_depth: 16/32-bit grayscale inputs: "clip" = PIL ``convert("RGB")`` (values above 255
        saturate, as in the reference; the detail says how many pixels did), "scale" = keep the
        high byte (v >> 8, as PIL itself reads 16-bit RGB PNGs); None: medgen "clip", standard "scale".
    lpips_batch_size: pairs per LPIPS forward; None: per device (8 on CPU: best of 1/4/8 measured on
        2 cores; 32 on CUDA/MPS).
    """

    preset: Literal["medgen", "standard"] = "medgen"
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"
    lpips_size: int | None = 256
    resize_output: bool = True
    lpips_weights: Path | None = None
    resize_filter: Literal["lanczos", "bilinear", "bicubic", "nearest"] = "lanczos"
    lpips_input: Literal["unit", "signed"] | None = None
    high_bit_depth: Literal["clip", "scale"] | None = None
    lpips_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.preset not in ("medgen", "standard"):
            raise ValueError(f"unknown preset {self.preset!r}; use 'medgen' or 'standard'")
        if self.lpips_net not in LPIPS_TRUNK_FILES:
            raise ValueError(f"unknown lpips_net {self.lpips_net!r}; use one of {sorted(LPIPS_TRUNK_FILES)}")
        if self.lpips_size is not None and (not isinstance(self.lpips_size, int) or self.lpips_size < 16):
            raise ValueError(f"lpips_size must be an integer >= 16 or None, not {self.lpips_size!r}")
        if self.resize_filter not in RESAMPLE_FILTERS:
            raise ValueError(f"unknown resize_filter {self.resize_filter!r}; use one of {sorted(RESAMPLE_FILTERS)}")
        if self.lpips_input not in (None, "unit", "signed"):
            raise ValueError(f"lpips_input must be 'unit', 'signed' or None, not {self.lpips_input!r}")
        if self.high_bit_depth not in (None, "clip", "scale"):
            raise ValueError(f"high_bit_depth must be 'clip', 'scale' or None, not {self.high_bit_depth!r}")
        if self.lpips_batch_size is not None and self.lpips_batch_size < 1:
            raise ValueError("lpips_batch_size must be >= 1")

    @property
    def effective_lpips_input(self) -> Literal["unit", "signed"]:
        if self.lpips_input is not None:
            return self.lpips_input
        return "unit" if self.preset == "medgen" else "signed"

    @property
    def effective_high_bit_depth(self) -> Literal["clip", "scale"]:
        if self.high_bit_depth is not None:
            return self.high_bit_depth
        return "clip" if self.preset == "medgen" else "scale"


def _pixel_metrics(prepared: Prepared, metrics: frozenset[str], options: ImageMetricOptions) -> dict[str, MetricValue]:
    """SSIM and PSNR for one prepared pair (nothing when the pair failed to prepare). Pair by
    pair: stacking same-sized pairs was measured slower (the working set leaves the cache); each
    pair is computed in cache-sized row tiles instead. Frees the arrays it no longer needs."""
    results: dict[str, MetricValue] = {}
    if prepared.error is not None:
        return results
    note = "; ".join(prepared.notes)
    if "ssim" in metrics:
        if options.preset == "medgen":
            x, y, window = prepared.out_gray, prepared.ref_gray, 7
        else:
            x, y, window = prepared.out_rgb, prepared.ref_rgb, 11
        assert x is not None and y is not None
        if min(x.shape[:2]) < window:
            results["ssim"] = MetricValue(
                None, "error", f"image {x.shape[1]}x{x.shape[0]} is smaller than the {window}x{window} SSIM window"
            )
        elif options.preset == "medgen":
            # SSIM is symmetric in its two images; the reference passes (ground truth, output).
            results["ssim"] = MetricValue(ssim_uniform(y, x), "ok", note)
        else:
            try:
                results["ssim"] = MetricValue(ssim_gaussian(y, x), "ok", note)
            except ImportError as exc:
                results["ssim"] = MetricValue(None, "unavailable", f"the standard SSIM preset needs scipy ({exc}); pip install scipy")
    if "psnr" in metrics:
        assert prepared.out_rgb is not None and prepared.ref_rgb is not None
        results["psnr"] = MetricValue(psnr(prepared.ref_rgb, prepared.out_rgb), "ok", note)
    prepared.out_gray = prepared.ref_gray = prepared.out_rgb = prepared.ref_rgb = None
    return results


def _lpips_for_chunk(
    model: Any, chunk: list[Prepared], options: ImageMetricOptions, device: str, batch_size: int
) -> dict[tuple[int, str], MetricValue]:
    import torch

    results: dict[tuple[int, str], MetricValue] = {}
    signed = options.effective_lpips_input == "signed"
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prepared in enumerate(chunk):
        if prepared.error is None:
            assert prepared.out_lpips is not None
            groups.setdefault(prepared.out_lpips.shape, []).append(i)
    with torch.inference_mode():
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                part = indices[start : start + batch_size]
                try:
                    values = lpips_values(model, [chunk[i].out_lpips for i in part], [chunk[i].ref_lpips for i in part], signed, device)  # type: ignore[misc]
                except RuntimeError as exc:
                    for i in part:
                        shape = chunk[i].out_lpips.shape  # type: ignore[union-attr]
                        results[(i, "lpips")] = MetricValue(None, "error", f"LPIPS failed on {shape[1]}x{shape[0]} input: {exc}")
                    continue
                for i, value in zip(part, values, strict=True):
                    results[(i, "lpips")] = MetricValue(value, "ok", "; ".join(chunk[i].notes))
    return results


# --------------------------------------------------------------------------------------------
# Entry point


def compute_image_metrics(
    pairs: Sequence[tuple[str, Path | None, Path | None]],
    metrics: Collection[str],
    options: ImageMetricOptions = ImageMetricOptions(),
    device: str = "auto",
) -> dict[tuple[str, str], MetricValue]:
    """SSIM / PSNR / LPIPS for each (sample_id, output_path, reference_path) pair.

    Returns {(sample_id, metric): MetricValue} for every pair and every requested metric: "ok"
    with a value, or "missing_output" / "error" / "unavailable" with a detail, never a stand-in
    number. `device` ("auto", "cpu", "cuda", "cuda:N", "mps") only affects LPIPS.
    """
    wanted = frozenset(m.lower() for m in metrics)
    unknown = wanted - set(IMAGE_METRICS)
    if unknown:
        raise ValueError(f"unknown image metrics {sorted(unknown)}; choose from {list(IMAGE_METRICS)}")
    ids = [sample_id for sample_id, _, _ in pairs]
    if len(set(ids)) != len(ids):
        duplicated = sorted({s for s in ids if ids.count(s) > 1})
        raise ValueError(f"duplicate sample ids: {duplicated[:5]}")
    results: dict[tuple[str, str], MetricValue] = {}
    if not pairs or not wanted:
        return results

    model: Any = None
    lpips_unavailable: str | None = None
    resolved_device = "cpu"
    if "lpips" in wanted:
        from rubric_judge.metrics.device import resolve_device

        try:
            resolved_device = resolve_device(device)
            model = load_lpips_model(options.lpips_net, options.lpips_weights, resolved_device)
        except MetricUnavailable as exc:
            lpips_unavailable = str(exc)
        except ImportError as exc:
            lpips_unavailable = f"LPIPS needs torch ({exc}); pip install 'rubric-judge[metrics]'"
    on_cpu = resolved_device == "cpu"
    batch_size = options.lpips_batch_size or (_CPU_LPIPS_BATCH if on_cpu else _CUDA_LPIPS_BATCH)
    run_lpips = model is not None

    def prepare_pair(index: int, pair: tuple[str, Path | None, Path | None]) -> tuple[Prepared, dict[tuple[int, str], MetricValue]]:
        prepared = prepare(pair[0], pair[1], pair[2], wanted, options)
        return prepared, {(index, metric): value for metric, value in _pixel_metrics(prepared, wanted, options).items()}

    def prepare_chunk(
        chunk_pairs: Sequence[tuple[str, Path | None, Path | None]],
    ) -> tuple[list[Prepared], dict[tuple[int, str], MetricValue]]:
        # Decoding (PIL) and the numpy SSIM/PSNR release the GIL: pairs run on `prep_workers`
        # threads. LPIPS runs after each chunk, with the cores to itself.
        done = (
            list(prep_pool.map(prepare_pair, range(len(chunk_pairs)), chunk_pairs))
            if prep_pool
            else [prepare_pair(i, p) for i, p in enumerate(chunk_pairs)]
        )
        values: dict[tuple[int, str], MetricValue] = {}
        for _, pair_values in done:
            values.update(pair_values)
        return [prepared for prepared, _ in done], values

    def record(chunk: list[Prepared], values: dict[tuple[int, str], MetricValue]) -> None:
        for i, prepared in enumerate(chunk):
            for metric in IMAGE_METRICS:
                if metric not in wanted:
                    continue
                if prepared.error is not None:
                    results[(prepared.sample_id, metric)] = MetricValue(None, prepared.error.status, prepared.error.detail)
                elif metric == "lpips" and lpips_unavailable is not None:
                    results[(prepared.sample_id, metric)] = MetricValue(None, "unavailable", lpips_unavailable)
                else:
                    results[(prepared.sample_id, metric)] = values[(i, metric)]

    chunks = [pairs[start : start + _CHUNK_PAIRS] for start in range(0, len(pairs), _CHUNK_PAIRS)]
    workers = _prep_workers()
    prep_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-metrics") if workers > 1 and len(pairs) > 1 else None
    try:
        if not run_lpips:
            for chunk_pairs in chunks:
                record(*prepare_chunk(chunk_pairs))
        else:
            from rubric_judge.metrics.device import cpu_torch_threads

            with cpu_torch_threads(resolved_device) as torch_threads, _torch_inference():
                if on_cpu and torch_threads >= workers:
                    # torch has every core: decode + SSIM/PSNR for a chunk on all cores, then
                    # LPIPS for it on all cores (overlapping the two would oversubscribe them).
                    for chunk_pairs in chunks:
                        chunk, values = prepare_chunk(chunk_pairs)
                        values.update(_lpips_for_chunk(model, chunk, options, resolved_device, batch_size))
                        record(chunk, values)
                else:
                    # GPU, or CPU cores that torch leaves free (busy machine): LPIPS runs on the
                    # device / its threads while the next chunk is decoded on the others.
                    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-metrics-next") as ahead:
                        pending: Future[Any] = ahead.submit(prepare_chunk, chunks[0])
                        for index in range(len(chunks)):
                            chunk, values = pending.result()
                            if index + 1 < len(chunks):
                                pending = ahead.submit(prepare_chunk, chunks[index + 1])
                            values.update(_lpips_for_chunk(model, chunk, options, resolved_device, batch_size))
                            record(chunk, values)
    finally:
        if prep_pool is not None:
            prep_pool.shutdown(wait=True)
    return results


def _prep_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(_MAX_PREP_WORKERS, cores))


@contextlib.contextmanager
def _torch_inference() -> Iterator[None]:
    import torch

    with torch.inference_mode():
        yield
