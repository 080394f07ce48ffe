"""Thumbnails for the report: small data: URIs, made in parallel, one per distinct file content.

A report must open anywhere, offline and without the data set next to it, so images are
embedded as base64 data URIs of a downscaled copy (PNG or JPEG, whichever is smaller). Each
distinct content (sha256 of the file's bytes) is thumbnailed and embedded once, however many
runs or samples show it (a reference image appears once per model). The total embedded size is
capped: a report that would exceed the cap is refused with a message naming the ways out
(`--link-images`, a smaller `--thumb-size`, a larger cap) rather than silently written huge.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rubric_judge.cache.thumbnails import ThumbnailCache
from rubric_judge.errors import UserError
from rubric_judge.imageio import MAX_IMAGE_PIXELS_ENV, ImageError, ImageTooLarge, file_sha256, open_image

DEFAULT_MAX_SIDE = 256
DEFAULT_CAP_MB = 64.0


@dataclass(frozen=True)
class Thumbnail:
    """The embeddable form of one image content, or why there is none."""

    key: str  # short, unique per content: the CSS class the page uses ("i" + digest prefix)
    data_uri: str | None
    width: int = 0
    height: int = 0
    error: str | None = None  # unreadable file: shown in place of the image

    @property
    def size(self) -> int:
        return len(self.data_uri or "")


@dataclass(frozen=True)
class Thumbnails:
    by_path: dict[Path, Thumbnail]  # every requested existing file
    distinct: tuple[Thumbnail, ...]  # each content once, for the page's style sheet

    @property
    def total_bytes(self) -> int:
        return sum(t.size for t in self.distinct)


def make_thumbnails(paths: Iterable[Path], max_side: int = DEFAULT_MAX_SIDE, cap_mb: float = DEFAULT_CAP_MB,
                    workers: int | None = None, cache_dir: Path | None = None, cache_read_only: bool = False) -> Thumbnails:
    """Thumbnail every file in `paths` on all cores; raise UserError when their total exceeds `cap_mb`.

    With `cache_dir`, each thumbnail is also kept there under its content digest and size, so
    the next report over the same images only hashes them (decoding dominates otherwise); with
    `cache_read_only` too, thumbnails found there are used and nothing is created or written.
    """
    unique = list(dict.fromkeys(Path(p) for p in paths))
    workers = workers or min(32, os.cpu_count() or 1)
    store = ThumbnailCache(cache_dir, max_side, cache_read_only) if cache_dir is not None else None

    def make(digest: str, path: Path) -> tuple[str | None, int, int, str | None]:
        cached = store.get(digest) if store else None
        if cached is not None:
            return cached
        made = _thumbnail(path, max_side)
        if store and made[0] is not None:
            store.put(digest, made)
        return made

    # Reading and hashing is I/O, decoding and encoding release the GIL in Pillow: threads suffice.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = dict(zip(unique, pool.map(_digest, unique), strict=True))
        by_digest = {d: p for p, d in digests.items() if d is not None}
        made = dict(zip(by_digest, pool.map(make, by_digest, by_digest.values()), strict=True))
    thumbs: dict[str, Thumbnail] = {}
    for digest, (uri, width, height, error) in made.items():
        thumbs[digest] = Thumbnail("i" + digest[:16], uri, width, height, error)
    by_path = {}
    for path, digest in digests.items():
        by_path[path] = thumbs[digest] if digest is not None else Thumbnail("x", None, error="cannot read the file")
    result = Thumbnails(by_path, tuple(thumbs.values()))
    cap = int(cap_mb * 1024 * 1024)
    if result.total_bytes > cap:
        raise UserError(
            f"embedding {len(result.distinct)} thumbnails would add {result.total_bytes / 1048576:.1f} MB to the report, over the "
            f"{cap_mb:g} MB cap; pass --link-images to link the image files instead, a smaller --thumb-size (now {max_side}), "
            f"or a larger --max-embed-mb")
    return result


def _digest(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def _thumbnail(path: Path, max_side: int) -> tuple[str | None, int, int, str | None]:
    """(data URI, width, height, error): the image scaled to fit max_side, as the smaller of PNG and JPEG."""
    from PIL import Image, ImageOps

    try:
        with open_image(path) as image:  # refuses images over the pixel limit before decoding
            if image.format == "JPEG":
                image.draft("RGB", (max_side, max_side))  # decode at a reduced scale: several times faster
            image = _displayable(image)
            # Reduce by the largest integer factor with a box filter (area averaging, so no aliasing),
            # then Lanczos for the rest: a tenth of the cost of Lanczos all the way, and as sharp at this size.
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=1.0)
            ImageOps.exif_transpose(image, in_place=True)
    except ImageTooLarge as exc:
        return None, 0, 0, f"image too large ({exc.width}x{exc.height} pixels, over the {exc.limit:,}-pixel limit; see {MAX_IMAGE_PIXELS_ENV})"
    except (ImageError, OSError, ValueError) as exc:
        return None, 0, 0, f"unreadable image ({type(exc.__cause__ or exc).__name__})"
    png = io.BytesIO()
    # Level 1: nearly the size of level 6 on illustrations, at a fraction of the time.
    image.save(png, format="PNG", compress_level=1)
    jpeg = io.BytesIO()
    (image if image.mode in ("RGB", "L") else _flatten(image)).save(jpeg, format="JPEG", quality=85)
    media_type, data = min((("image/png", png.getvalue()), ("image/jpeg", jpeg.getvalue())), key=lambda c: len(c[1]))
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}", image.width, image.height, None


def _displayable(image):
    """8-bit L, RGB or RGBA: 16-bit and float images (common in medical data) are windowed to
    their own min..max, palettes are expanded."""
    from PIL import Image

    if image.mode in ("L", "RGB", "RGBA"):
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
        return Image.fromarray(scaled.clip(0, 255).astype(np.uint8), mode="L")
    if image.mode in ("LA", "PA", "P") and ("transparency" in image.info or image.mode != "P"):
        return image.convert("RGBA")
    return image.convert("RGB")


def _flatten(image):
    """RGBA over white: JPEG has no alpha."""
    from PIL import Image

    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
    return background
