"""Report thumbnails on disk: small text files `<cache dir>/thumbnails/<version>-<side>/<digest>`
holding "<width> <height> <data URI>", keyed by the sha256 of the image file."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from rubric_judge.cache.guard import GuardedFolder, describe


class ThumbnailCache(GuardedFolder):
    """Thumbnails as small text files `<dir>/thumbnails/<version>-<side>/<digest>`. Failures
    follow the other caches (rubric_judge.cache.guard): a file where the folder belongs is set
    aside, an undecodable entry is a miss (made again and replaced), an unwritable folder is only
    read, and a read-only one is never written or created."""

    VERSION = "v1"  # bump when _thumbnail's output changes

    def __init__(self, root: Path, max_side: int, read_only: bool = False):
        super().__init__(Path(root), f"thumbnails/{self.VERSION}-{max_side}", "thumbnail cache", read_only)
        self.dir = self.folder
        with self._lock:
            self._check_writable()
            self.usable = self._check_shape()

    def get(self, digest: str) -> tuple[str | None, int, int, str | None] | None:
        if not self.usable:
            return None
        try:
            width, height, uri = (self.dir / digest).read_text(encoding="ascii").split(" ", 2)
            if not uri.startswith("data:image/"):
                raise ValueError("not a data: URI")
            return uri, int(width), int(height), None
        except FileNotFoundError:
            return None
        except ValueError as exc:  # garbled content (UnicodeDecodeError is one too)
            self._unreadable_entry(exc)
        except OSError as exc:
            self._unreadable(exc)
        return None

    def put(self, digest: str, made: tuple[str | None, int, int, str | None]) -> None:
        if not (self.usable and self.writable):
            return
        uri, width, height, _ = made
        tmp = self.dir / f"{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(f"{width} {height} {uri}", encoding="ascii")
            tmp.replace(self.dir / digest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            with self._lock:
                self._stop_writing(describe(exc))
