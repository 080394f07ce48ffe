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
    def __init__(self, directory: Path, mode: CacheMode = CacheMode.read_write):
        import diskcache

        self.mode = mode
        self.directory = Path(directory)
        self._cache = diskcache.Cache(str(self.directory / "verdicts"), size_limit=2**40, eviction_policy="none") if mode is not CacheMode.off else None

    def get(self, key: str) -> CachedAnswer | None:
        if self._cache is None or not self.mode.reads:
            return None
        value = self._cache.get(key)
        return CachedAnswer(**value) if isinstance(value, dict) else None

    def put(self, key: str, entry: CachedAnswer) -> None:
        if self._cache is None or not self.mode.writes:
            return
        import time

        self._cache.set(key, {**entry.__dict__, "created_at": entry.created_at or time.time()})

    def entries(self):
        """(key, CachedAnswer) for every entry."""
        if self._cache is None:
            return
        for key in list(self._cache.iterkeys()):
            value = self._cache.get(key)
            if isinstance(value, dict):
                yield key, CachedAnswer(**value)

    def clear(self) -> int:
        return self._cache.clear() if self._cache is not None else 0

    def prune(self, judge_model: str | None, older_than_days: float | None) -> int:
        import time

        cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
        doomed = [
            key for key, entry in self.entries()
            if (judge_model is None or entry.judge_model == judge_model) and (cutoff is None or entry.created_at < cutoff)
        ]
        for key in doomed:
            self._cache.delete(key)
        return len(doomed)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> VerdictCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cache_stats(directory: Path) -> dict[str, Any]:
    """Verdicts (what they cost) and the derived data kept beside them: metric values
    (`metrics/`) and report thumbnails (`thumbnails/`), which `cache clear` leaves alone
    because they cost nothing to recompute but time."""
    with VerdictCache(directory, CacheMode.read_only) as cache:
        totals = {"directory": str(directory), "entries": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        for _, entry in cache.entries():
            totals["entries"] += 1
            totals["prompt_tokens"] += entry.prompt_tokens
            totals["completion_tokens"] += entry.completion_tokens
            totals["cost_usd"] += entry.cost_usd or 0.0
        totals["bytes"] = cache._cache.volume() if cache._cache is not None else 0
    for name in ("metrics", "thumbnails"):
        files = [f for f in (Path(directory) / name).rglob("*") if f.is_file()]
        totals[f"{name}_bytes"] = sum(f.stat().st_size for f in files)
    return totals
