"""The verdict cache: validated judge answers on disk (diskcache), keyed by `cache.key`.

Only validated successes are stored, with their token usage, so a re-run never pays twice for
the same judgment and a failed call is always retried. Modes: read_write (default), read_only
(use what is there, store nothing), refresh (ask the judge again and overwrite), off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any


class CacheMode(str, Enum):
    read_write = "read-write"
    read_only = "read-only"
    refresh = "refresh"
    off = "off"

    @property
    def reads(self) -> bool:
        return self in (CacheMode.read_write, CacheMode.read_only)

    @property
    def writes(self) -> bool:
        return self in (CacheMode.read_write, CacheMode.refresh)


@dataclass(frozen=True)
class CachedAnswer:
    answer: dict[str, Any]  # criterion id -> validated answer fields
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    judge_model: str
    created_at: float = 0.0  # unix time; for `cache prune --older-than-days`


def default_cache_dir() -> Path:
    configured = os.environ.get("RUBRIC_JUDGE_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rubric-judge"


class VerdictCache:
    """Validated judge answers under `<directory>/verdicts`, in the given mode.

    A corrupted store is set aside and rebuilt empty, an unwritable one is only read, and in
    read-only mode nothing is opened for writing (see `rubric_judge.cache.guard`): the run always
    goes on, at worst paying again for calls it had cached.
    """

    def __init__(self, directory: Path, mode: CacheMode = CacheMode.read_write):
        from rubric_judge.cache.guard import DiskStore

        self.mode = mode
        self.directory = Path(directory)
        self._store = None if mode is CacheMode.off else DiskStore(
            self.directory, "verdicts", "verdict cache", read_only=not mode.writes, size_limit=2**40, eviction_policy="none")

    @property
    def folder(self) -> Path:
        return self.directory / "verdicts"

    @property
    def writable(self) -> bool:
        """Whether entries can be stored or removed (False read-only, or when the folder cannot be written)."""
        return self._store is not None and self._store.writable

    @property
    def corruption(self) -> str | None:
        """Why the store was found corrupted in this session, if it was."""
        return self._store.corruption if self._store is not None else None

    def get(self, key: str) -> CachedAnswer | None:
        if self._store is None or not self.mode.reads:
            return None
        return _answer(self._store.get(key))

    def put(self, key: str, entry: CachedAnswer) -> None:
        if self._store is None or not self.mode.writes:
            return
        import time

        self._store.set(key, {**entry.__dict__, "created_at": entry.created_at or time.time()})

    def entries(self):
        """(key, CachedAnswer) for every readable entry."""
        if self._store is None:
            return
        for key, value in self._store.items():
            answer = _answer(value)
            if answer is not None:
                yield key, answer

    def clear(self) -> int:
        return self._store.clear() if self._store is not None else 0

    def prune(self, judge_model: str | None, older_than_days: float | None) -> int:
        import time

        cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
        doomed = [
            key for key, entry in self.entries()
            if (judge_model is None or entry.judge_model == judge_model) and (cutoff is None or entry.created_at < cutoff)
        ]
        return sum(1 for key in doomed if self._store is not None and self._store.delete(key))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> VerdictCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _answer(value: Any) -> CachedAnswer | None:
    """The stored dict as a CachedAnswer; None for anything else (an entry from another version)."""
    if not isinstance(value, dict):
        return None
    try:
        return CachedAnswer(**value)
    except TypeError:
        return None


def cache_stats(directory: Path) -> dict[str, Any]:
    """Verdicts (what they cost) and the derived data kept beside them: metric values
    (`metrics/`) and report thumbnails (`thumbnails/`), which `cache clear` leaves alone
    because they cost nothing to recompute but time. Reads only: works on a read-only folder,
    and reports a corrupted store (`corrupted`) and stores set aside earlier (`set_aside`)
    without changing anything."""
    from rubric_judge.cache.guard import folder_bytes, set_aside_folders

    directory = Path(directory)
    with VerdictCache(directory, CacheMode.read_only) as cache:
        totals: dict[str, Any] = {"directory": str(directory), "entries": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        for _, entry in cache.entries():
            totals["entries"] += 1
            totals["prompt_tokens"] += entry.prompt_tokens
            totals["completion_tokens"] += entry.completion_tokens
            totals["cost_usd"] += entry.cost_usd or 0.0
        totals["corrupted"] = cache.corruption
    totals["bytes"] = folder_bytes(directory / "verdicts")
    for name in ("metrics", "thumbnails"):
        totals[f"{name}_bytes"] = folder_bytes(directory / name)
    totals["set_aside"] = [(path, folder_bytes(path)) for path in set_aside_folders(directory)]
    return totals
