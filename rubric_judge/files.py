"""Writing files safely: text written atomically (never half a file under the final name), and
files placed by hard link or copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def place_file(source: Path, target: Path) -> bool:
    """Put `source` at `target` as a hard link, or a copy where linking fails (another file
    system); an identical target is left alone. True when the target shares the source's bytes
    on disk (linked), False when it is a copy."""
    if target.exists():
        try:
            if target.samefile(source):
                return True
            if target.stat().st_size == source.stat().st_size and target.read_bytes() == source.read_bytes():
                return False
        except OSError:
            pass
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
        return True
    except OSError:
        shutil.copy2(source, target)
        return False


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file under `path`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
