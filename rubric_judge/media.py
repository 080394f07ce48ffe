"""Images exactly as the judge will receive them: bytes, media type and digest.

The judge must see images at full fidelity, so PNG and JPEG files go out as their original
bytes; anything else (WebP, BMP, TIFF, ...) is converted losslessly to PNG. The media type comes
from the bytes, never from the file name (a PNG named .jpg is still a PNG). A grounding label can
be drawn in a white strip under the image. Everything here is deterministic, so the sha256 of
the bytes sent is a sound part of the cache key.

Every image rubric-judge reads from a user's files (for the judge, the metrics, the report
thumbnails) is opened by `open_image`, which refuses an image whose header declares more pixels
than the limit ($RUBRIC_JUDGE_MAX_IMAGE_PIXELS, default 2**28) before anything is decoded: a
small file can declare a canvas that would take gigabytes to decode (a decompression bomb).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rubric_judge.errors import Location, Problem, UserError

SENT_AS_IS = {"image/png", "image/jpeg"}
MAX_SENT_BYTES = 20 * 1024 * 1024  # providers reject larger images; re-encode instead

MAX_IMAGE_PIXELS_ENV = "RUBRIC_JUDGE_MAX_IMAGE_PIXELS"
# 16384 x 16384: above any radiograph, CT/MR slice or illustration in practice; at 4 bytes a
# pixel about 1 GiB once decoded, which is as much as one image should ever cost.
DEFAULT_MAX_IMAGE_PIXELS = 2**28


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    media_type: str
    sha256: str
    width: int
    height: int

    def data_url(self) -> str:
        import base64

        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True)
class ImageInfo:
    """What the cache key and cost estimate need, without holding the bytes."""

    sha256: str
    media_type: str
    width: int
    height: int


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


def encode_for_judge(path: Path, label: str | None = None, strip: bool = False, max_side: int | None = None) -> EncodedImage:
    """The exact bytes the judge receives for this image."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror}") from None
    media_type = sniff_media_type(raw[:16])
    if media_type is None:
        raise ImageError(f"{path} is not a recognised image (PNG, JPEG, WebP, GIF, BMP or TIFF)")
    image = _decode(raw, path)
    width, height = image.size
    needs_resize = max_side is not None and max(width, height) > max_side
    if media_type in SENT_AS_IS and not strip and not needs_resize and len(raw) <= MAX_SENT_BYTES:
        return EncodedImage(raw, media_type, hashlib.sha256(raw).hexdigest(), width, height)
    if needs_resize:
        from PIL import Image

        scale = max_side / max(width, height)
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    if strip and label:
        image = with_label_strip(image, label)
    data = _png_bytes(image)
    return EncodedImage(data, "image/png", hashlib.sha256(data).hexdigest(), image.size[0], image.size[1])


class _EncodedCache:
    """Recently encoded images, bounded by total bytes: the planner encodes every image to
    hash it, and the executor then sends the same bytes without encoding them again."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.used = 0
        self.entries: OrderedDict[tuple, EncodedImage] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> EncodedImage | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.used = 0

    def put(self, key: tuple, image: EncodedImage) -> None:
        with self.lock:
            if key in self.entries or len(image.data) > self.budget:
                return
            self.entries[key] = image
            self.used += len(image.data)
            while self.used > self.budget:
                _, evicted = self.entries.popitem(last=False)
                self.used -= len(evicted.data)


_ENCODED = _EncodedCache(256 * 1024 * 1024)


def encoded_image(path: Path, label: str | None = None, strip: bool = False, max_side: int | None = None) -> EncodedImage:
    """`encode_for_judge`, remembered per file version and encoding options (thread-safe)."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror}") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size, label, strip, max_side)
    found = _ENCODED.get(key)
    if found is None:
        found = encode_for_judge(path, label, strip, max_side)
        _ENCODED.put(key, found)
    return found


def image_info(path: Path, label: str | None = None, strip: bool = False, max_side: int | None = None) -> ImageInfo:
    """Digest and size of what the judge will be sent for this image."""
    encoded = encoded_image(path, label, strip, max_side)
    return ImageInfo(encoded.sha256, encoded.media_type, encoded.width, encoded.height)


def _decode(raw: bytes, path: Path):
    image = open_image(raw, path)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise ImageError(f"{path} cannot be decoded: {exc}") from None
    if image.size[0] == 0 or image.size[1] == 0:
        raise ImageError(f"{path} has zero size")
    return image


def _png_bytes(image) -> bytes:
    if image.mode not in ("RGB", "RGBA", "L", "LA", "I;16", "I"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def with_label_strip(image, label: str):
    """The image with `label` in black on a white strip beneath it (MedGEN's image grounding)."""
    from PIL import Image, ImageDraw, ImageFont

    rgb = image.convert("RGB")
    width, height = rgb.size
    font_size = max(12, min(48, width // 16))
    font = ImageFont.load_default(size=font_size)
    strip_height = int(font_size * 1.8)
    canvas = Image.new("RGB", (width, height + strip_height), "white")
    canvas.paste(rgb, (0, 0))
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    x = max(0, (width - (right - left)) // 2)
    y = height + (strip_height - (bottom - top)) // 2 - top
    draw.text((x, y), label, fill="black", font=font)
    return canvas


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised per file version."""
    stat = Path(path).stat()
    return _file_sha256(Path(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=65536)
def _file_sha256(path: Path, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # cache key only
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
