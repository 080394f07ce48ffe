"""Metric values on disk (diskcache), keyed by metric, options and the sha256 of both inputs
(the key is made by metrics/, with cache.key's scheme). Values are plain dicts, so this store
knows nothing of the metrics that fill it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class MetricValueStore:
    """`<directory>/metrics`. Failures follow the other caches (cache/guard.py): a corrupted
    store is set aside and rebuilt, an unwritable one is only read.

    Args:
        directory: the cache folder.
        writes: False for `--cache read-only`: values are read through a read-only connection
            and nothing is created or written.
    """

    def __init__(self, directory: Path, writes: bool = True):
        from rubric_judge.cache.guard import DiskStore

        self._store = DiskStore(Path(directory), "metrics", "metric cache", read_only=not writes)
        self.writes = writes

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._store.get(key)
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.writes:
            self._store.set(key, value)

    def close(self) -> None:
        self._store.close()
