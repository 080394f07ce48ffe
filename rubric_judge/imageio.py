"""Reading images from users' files safely: the one place rubric-judge opens an image.

Every image rubric-judge reads (for the judge, the metrics, the report thumbnails, the offline
judge) is opened by `open_image`, which refuses an image whose header declares more pixels than
the limit ($RUBRIC_JUDGE_MAX_IMAGE_PIXELS, default 2**28) before anything is decoded: a small
file can declare a canvas that would take gigabytes to decode (a decompression bomb). The media
type comes from the bytes, never from the file name (a PNG named .jpg is still a PNG).
"""

from __future__ import annotations

import hashlib
import io
import os
from functools import lru_cache
from pathlib import Path

from rubric_judge.errors import Location, Problem, UserError

# The file names taken for images wherever rubric-judge looks for them by suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")

MAX_IMAGE_PIXELS_ENV = "RUBRIC_JUDGE_MAX_IMAGE_PIXELS"
# 16384 x 16384: above any radiograph, CT/MR slice or illustration in practice; at 4 bytes a
# pixel about 1 GiB once decoded, which is as much as one image should ever cost.
DEFAULT_MAX_IMAGE_PIXELS = 2**28


class ImageError(Exception):
    """An image that cannot be read or decoded; the message says which and why."""


class ImageTooLarge(ImageError):
    """An image whose header declares more pixels than the limit; none of it was decoded."""

    def __init__(self, name: object, width: int, height: int, limit: int):
        self.width, self.height, self.limit = width, height, limit
        super().__init__(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the {limit:,}-pixel limit, so it was not decoded "
            f"(a guard against decompression bombs); if the image is genuine, set {MAX_IMAGE_PIXELS_ENV}={width * height} or more"
        )


def max_image_pixels() -> int:
    """The most pixels (width x height) an image may declare before rubric-judge decodes it.

    Returns:
        $RUBRIC_JUDGE_MAX_IMAGE_PIXELS when set, else DEFAULT_MAX_IMAGE_PIXELS.

    Raises:
        UserError: the variable is set to something other than a positive whole number.
    """
    configured = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not configured:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(configured)
    except ValueError:
        limit = 0
    if limit < 1:
        raise UserError(Problem(Location(None), f"{MAX_IMAGE_PIXELS_ENV} must be a positive whole number of pixels, not {configured!r}",
                                fix=f"e.g. {MAX_IMAGE_PIXELS_ENV}={DEFAULT_MAX_IMAGE_PIXELS} (the default), or unset it"))
    return limit


def open_image(source: Path | str | bytes, name: object = None):
    """Open an image for decoding, refusing it first if it declares more pixels than the limit.

    PIL's `Image.open` reads only the header, so the size is known before any pixel memory is
    allocated; decoding happens later, on `load()`, `convert()` and the like. Every reader of
    user images goes through here, so the limit is enforced in one place.

    Args:
        source: a file path, or the file's bytes.
        name: how messages name the image (default: the path, or "image" for bytes).

    Returns:
        The opened, not yet decoded PIL image; close it (it is a context manager).

    Raises:
        ImageTooLarge: width x height exceeds `max_image_pixels()`.
        ImageError: the file cannot be read or is not an image Pillow knows.
        UserError: $RUBRIC_JUDGE_MAX_IMAGE_PIXELS is not a positive whole number.
    """
    from PIL import Image, UnidentifiedImageError

    limit = max_image_pixels()
    # PIL's own guard is fixed (a warning at 89 Mpx, an error at 179 Mpx) and ends in a traceback;
    # the configurable check below replaces it for every image rubric-judge opens.
    Image.MAX_IMAGE_PIXELS = None
    if name is None:
        name = "image" if isinstance(source, bytes) else source
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} cannot be decoded: not an image format Pillow can read") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # unreadable file, corrupt header
        raise ImageError(f"{name} cannot be decoded: {getattr(exc, 'strerror', None) or exc}") from exc
    width, height = image.size
    if width * height > limit:
        image.close()
        raise ImageTooLarge(name, width, height, limit)
    return image


def sniff_media_type(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"BM"):
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    return None


def decode_image(raw: bytes, path: Path):
    """The image fully decoded, within the pixel limit; any failure is an ImageError naming `path`."""
    image = open_image(raw, path)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise ImageError(f"{path} cannot be decoded: {exc}") from None
    if image.size[0] == 0 or image.size[1] == 0:
        raise ImageError(f"{path} has zero size")
    return image


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised per file version."""
    stat = Path(path).stat()
    return _file_sha256(Path(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=65536)
def _file_sha256(path: Path, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # cache key only
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
