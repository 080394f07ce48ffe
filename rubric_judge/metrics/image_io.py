"""Reading an output/reference image pair for the image metrics: decode both (through
rubric_judge.imageio.open_image, which refuses images over the pixel limit), convert them like the
MedGEN-Bench reference (PIL ``convert("RGB")``), resize the output to the reference size and
keep only the arrays the requested metrics need.

A pair that cannot be prepared carries a PairError (status "missing_output" or "error" and a
detail naming the file), never a stand-in image.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from rubric_judge.imageio import ImageError, ImageTooLarge, open_image

if TYPE_CHECKING:  # the options live with the entry point, which imports this module
    from rubric_judge.metrics.image import ImageMetricOptions

# PIL filters by the name ImageMetricOptions.resize_filter takes.
RESAMPLE_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class PairError(Exception):
    """Why a pair has no values: status "missing_output" (no usable output image) or "error"."""

    def __init__(self, status: Literal["error", "missing_output"], detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def decode_rgb(path: Path | None, role: str, high_bit_depth: str, notes: list[str]) -> Image.Image:
    """The image at `path` as 8-bit RGB, converted like the reference (PIL convert("RGB"))."""
    # A model's image that is absent or cannot be read is a missing output (its rubric's policy
    # counts it: a model gains nothing by writing a broken file instead of none); a reference
    # image that cannot be used is an error (no value, counted nowhere).
    unusable: Literal["error", "missing_output"] = "missing_output" if role == "output" else "error"
    if path is None or not os.path.exists(path):
        raise PairError(unusable, f"{role} image missing: {path}" if path is not None else f"no {role} image given")
    path = Path(path)
    try:
        if path.is_dir():
            raise PairError(unusable, f"{role} image path is a directory: {path}")
        if path.stat().st_size == 0:
            raise PairError(unusable, f"{role} image is an empty file (0 bytes): {path}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency notices
            with open_image(path) as opened:  # refuses images over the pixel limit before decoding
                opened.load()
                image = opened
                if image.width == 0 or image.height == 0:
                    raise PairError(unusable, f"{role} image has zero size ({image.width}x{image.height}): {path}")
                if image.mode in _HIGH_BIT_MODES:
                    return _high_bit_to_rgb(image, role, high_bit_depth, notes)
                return image.convert("RGB")
    except PairError:
        raise
    except ImageTooLarge as exc:  # the message names the file, the limit and how to raise it
        raise PairError("error", f"{role} image: {exc}") from exc
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError...
        cause = exc.__cause__ if isinstance(exc, ImageError) and exc.__cause__ is not None else exc  # PIL's own error
        raise PairError(unusable, f"cannot decode {role} image {path}: {type(cause).__name__}: {cause}") from exc


def _high_bit_to_rgb(image: Image.Image, role: str, high_bit_depth: str, notes: list[str]) -> Image.Image:
    values = np.asarray(image)
    if high_bit_depth == "scale":
        byte = (np.clip(values, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
        notes.append(f"{role}: {image.mode} grayscale scaled to 8 bits (high byte)")
        return Image.fromarray(byte).convert("RGB")
    saturated = int(np.count_nonzero(values > 255))
    if saturated:
        share = 100.0 * saturated / values.size
        notes.append(
            f"{role}: {image.mode} grayscale clipped to 8 bits like PIL convert('RGB') (the MedGEN-Bench reference): "
            f"{share:.1f}% of pixels saturated at 255; high_bit_depth='scale' rescales instead"
        )
    return image.convert("RGB")


@dataclass
class Prepared:
    """One pair, decoded: the arrays each requested metric reads, or the error that stopped it."""

    sample_id: str
    notes: list[str] = field(default_factory=list)
    error: PairError | None = None
    out_gray: np.ndarray | None = None  # medgen SSIM (H, W) uint8
    ref_gray: np.ndarray | None = None
    out_rgb: np.ndarray | None = None  # PSNR / standard SSIM (H, W, 3) uint8
    ref_rgb: np.ndarray | None = None
    out_lpips: np.ndarray | None = None  # (h, w, 3) uint8 at the LPIPS input size
    ref_lpips: np.ndarray | None = None


def prepare(
    sample_id: str, output: Path | None, reference: Path | None, metrics: frozenset[str], options: ImageMetricOptions
) -> Prepared:
    """Decode one (output, reference) pair for `metrics`.

    Args:
        sample_id: the pair's sample.
        output: the model's image; None or a missing file is a "missing_output".
        reference: the ground-truth image; None or a missing file is an "error".
        metrics: the metrics to prepare for ("ssim", "psnr", "lpips").
        options: preset, resizing and high-bit-depth handling.

    Returns:
        The prepared arrays (grayscale for medgen SSIM, RGB for PSNR and standard SSIM, RGB at
        the LPIPS size for LPIPS) and notes on what was changed, or `error` set.
    """
    prepared = Prepared(sample_id)
    high_bit = options.effective_high_bit_depth
    try:
        out = decode_rgb(output, "output", high_bit, prepared.notes)
        ref = decode_rgb(reference, "reference", high_bit, prepared.notes)
        if out.size != ref.size:
            if not options.resize_output:
                raise PairError(
                    "error",
                    f"output size {out.width}x{out.height} differs from reference size {ref.width}x{ref.height} (resize_output=False)",
                )
            prepared.notes.append(f"output resized from {out.width}x{out.height} to {ref.width}x{ref.height} ({options.resize_filter})")
            out = out.resize(ref.size, RESAMPLE_FILTERS[options.resize_filter])
    except PairError as exc:
        prepared.error = exc
        return prepared
    if "ssim" in metrics and options.preset == "medgen":
        prepared.out_gray = np.asarray(out.convert("L"))
        prepared.ref_gray = np.asarray(ref.convert("L"))
    if "psnr" in metrics or ("ssim" in metrics and options.preset == "standard"):
        prepared.out_rgb = np.asarray(out)
        prepared.ref_rgb = np.asarray(ref)
    if "lpips" in metrics:
        size = options.lpips_size
        if size is not None:
            # torchvision transforms.Resize((s, s)) on a PIL image is PIL's bilinear resize.
            prepared.out_lpips = np.asarray(out.resize((size, size), Image.Resampling.BILINEAR))
            prepared.ref_lpips = np.asarray(ref.resize((size, size), Image.Resampling.BILINEAR))
        else:
            prepared.out_lpips = np.asarray(out)
            prepared.ref_lpips = np.asarray(ref)
    return prepared

