"""Images exactly as the judge will receive them: bytes, media type and digest.

The judge must see images at full fidelity, so PNG and JPEG files go out as their original
bytes; anything else (WebP, BMP, TIFF, ...) is converted losslessly to PNG. A grounding label can
be drawn in a white strip under the image. Everything here is deterministic, so the sha256 of
the bytes sent is a sound part of the cache key.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from rubric_judge.imageio import ImageError, decode_image, sniff_media_type

SENT_AS_IS = {"image/png", "image/jpeg"}
MAX_SENT_BYTES = 20 * 1024 * 1024  # providers reject larger images; re-encode instead


class JSONVerbatim(str):
    """Text that is its own JSON string body: printable ASCII with no quote or backslash (an
    image's base64 data URL). `judge.transport.encode_json` copies it into a request body as it
    is, where json.dumps would scan it character by character (about 5 ms a megabyte)."""

    __slots__ = ()


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    media_type: str
    sha256: str
    width: int
    height: int

    def data_url(self) -> JSONVerbatim:
        """The image as a base64 data URL, built once while recent (`_DataURLs`)."""
        return _DATA_URLS.url(self)


@dataclass(frozen=True)
class ImageInfo:
    """What the cache key and cost estimate need, without holding the bytes."""

    sha256: str
    media_type: str
    width: int
    height: int


def encode_for_judge(path: Path, label: str | None = None, strip: bool = False, max_side: int | None = None) -> EncodedImage:
    """The exact bytes the judge receives for this image."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror}") from None
    media_type = sniff_media_type(raw[:16])
    if media_type is None:
        raise ImageError(f"{path} is not a recognised image (PNG, JPEG, WebP, GIF, BMP or TIFF)")
    as_is = media_type in SENT_AS_IS and not strip and len(raw) <= MAX_SENT_BYTES
    digest = hashlib.sha256(raw).hexdigest() if as_is else ""
    if as_is:
        # These bytes, already encoded with these options from another file (the same inline
        # image sent to the server again, spooled to a new file): the same result, without
        # decoding them again.
        known = _ENCODED.get_content((digest, label, strip, max_side))
        if known is not None and known.data == raw:
            return known
    image = decode_image(raw, path)
    width, height = image.size
    needs_resize = max_side is not None and max(width, height) > max_side
    if as_is and not needs_resize:
        return EncodedImage(raw, media_type, digest, width, height)
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
    hash it, and the executor then sends the same bytes without encoding them again.

    Entries are found by file version (path, mtime, size: the planner's question, "what does
    this file encode to now?") or by content (the digest the planner hashed into a call's cache
    key: the executor's question, answered without touching the file)."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.used = 0
        self.entries: OrderedDict[tuple, EncodedImage] = OrderedDict()
        self.by_content: dict[tuple, tuple] = {}  # (sha256, *encoding options) -> key in entries
        self.lock = threading.Lock()

    def get(self, key: tuple) -> EncodedImage | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def get_content(self, content: tuple) -> EncodedImage | None:
        with self.lock:
            key = self.by_content.get(content)
            return None if key is None else self.entries.get(key)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.by_content.clear()
            self.used = 0

    def put(self, key: tuple, image: EncodedImage) -> None:
        with self.lock:
            if key in self.entries or len(image.data) > self.budget:
                return
            self.entries[key] = image
            self.by_content[_content_key(image.sha256, key)] = key
            self.used += len(image.data)
            while self.used > self.budget:
                evicted_key, evicted = self.entries.popitem(last=False)
                self.used -= len(evicted.data)
                content = _content_key(evicted.sha256, evicted_key)
                if self.by_content.get(content) == evicted_key:
                    del self.by_content[content]


class _DataURLs:
    """Recently built data URLs by image content, bounded by characters. The calls of one sample
    (one per dimension) and the rollouts of one prompt send the same images, and base64 costs
    the event loop 2-5 ms a megabyte: with two 1.5 MB illustrations per call and three calls
    per task, six encodings per task (about 15 ms) became two."""

    def __init__(self, budget_chars: int):
        self.budget = budget_chars
        self.used = 0
        self.urls: OrderedDict[tuple[str, str], JSONVerbatim] = OrderedDict()
        self.lock = threading.Lock()

    def url(self, image: EncodedImage) -> JSONVerbatim:
        key = (image.sha256, image.media_type)
        with self.lock:
            found = self.urls.get(key)
            if found is not None:
                self.urls.move_to_end(key)
                return found
        import base64

        # The media type is one of SENT_AS_IS or image/png, and base64 is letters, digits, + / =.
        url = JSONVerbatim(f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}")
        with self.lock:
            if key not in self.urls and len(url) <= self.budget:
                self.urls[key] = url
                self.used += len(url)
                while self.used > self.budget:
                    self.used -= len(self.urls.popitem(last=False)[1])
        return url


_DATA_URLS = _DataURLs(64 * 1024 * 1024)


def _content_key(sha256: str, key: tuple) -> tuple:
    # key: (path, mtime_ns, size, label, strip, max_side); the same bytes encoded with other
    # options (a label strip, a smaller side) are another image.
    return (sha256, *key[3:])


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


def planned_image(path: Path, sha256: str, label: str | None = None, strip: bool = False, max_side: int | None = None) -> EncodedImage:
    """The image the planner encoded and hashed as `sha256`: from memory without touching the file
    while it is there (a stat per image per call, on the event loop, adds up), else encoded
    from the file again.

    Args:
        path, label, strip, max_side: as for `encoded_image`.
        sha256: the digest the planner put into the call's cache key.

    Returns:
        The encoded image; its digest is `sha256` unless the file changed since it was planned
        and its encoding left memory (the caller checks).
    """
    found = _ENCODED.get_content((sha256, label, strip, max_side))
    return found if found is not None else encoded_image(path, label, strip, max_side)


def image_info(path: Path, label: str | None = None, strip: bool = False, max_side: int | None = None) -> ImageInfo:
    """Digest and size of what the judge will be sent for this image."""
    encoded = encoded_image(path, label, strip, max_side)
    return ImageInfo(encoded.sha256, encoded.media_type, encoded.width, encoded.height)


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
