"""`rubric-judge cache stats|clear|prune` on a real cache directory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from rubric_judge.cache.verdicts import CachedAnswer, CacheMode, VerdictCache, cache_stats
from rubric_judge.metrics import MetricCache
from rubric_judge.metrics.types import MetricValue

CLI = str(Path(sys.executable).with_name("rubric-judge"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)


def _fill(directory: Path) -> None:
    week_ago = time.time() - 7 * 86400
    with VerdictCache(directory, CacheMode.read_write) as cache:
        cache.put("k1", CachedAnswer({"c1": {"satisfied": True}}, 100, 10, 0.002, "openai/gpt-4.1"))
        cache.put("k2", CachedAnswer({"c2": {"satisfied": False}}, 200, 20, 0.004, "openai/gpt-4.1", created_at=week_ago))
        cache.put("k3", CachedAnswer({"c3": {"satisfied": True}}, 300, 30, None, "openai/other"))
    metrics = MetricCache(directory)
    metrics.put("m1", MetricValue(0.5, "ok"))
    metrics.close()
    thumbs = directory / "thumbnails" / "1-256"
    thumbs.mkdir(parents=True)
    (thumbs / "abc").write_text("x" * 5000)


def test_stats_counts_verdicts_and_what_lies_beside_them(tmp_path: Path) -> None:
    _fill(tmp_path)
    info = cache_stats(tmp_path)
    assert (info["entries"], info["prompt_tokens"], info["completion_tokens"]) == (3, 600, 60)
    assert abs(info["cost_usd"] - 0.006) < 1e-12  # an unknown price adds nothing, never a guess
    assert info["thumbnails_bytes"] == 5000 and info["metrics_bytes"] > 0
    result = _cli("cache", "stats", "--cache-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "3 verdict(s)" in result.stdout and "600 prompt + 60 completion tokens" in result.stdout and "$0.0060 paid" in result.stdout
    assert "report thumbnails 0.0 MB" in result.stdout


def test_prune_by_judge_and_age_then_clear_keeps_derived_data(tmp_path: Path) -> None:
    _fill(tmp_path)
    assert _cli("cache", "prune", "--cache-dir", str(tmp_path)).returncode == 2  # nothing said: refuse, do not guess
    result = _cli("cache", "prune", "--cache-dir", str(tmp_path), "--older-than-days", "1")
    assert result.returncode == 0 and "removed 1 cached verdict(s)" in result.stdout
    result = _cli("cache", "prune", "--cache-dir", str(tmp_path), "--judge", "openai/other")
    assert "removed 1 cached verdict(s)" in result.stdout
    with VerdictCache(tmp_path, CacheMode.read_only) as cache:
        assert [key for key, _ in cache.entries()] == ["k1"]
    result = _cli("cache", "clear", "--cache-dir", str(tmp_path), "--yes")
    assert result.returncode == 0 and "removed 1 cached verdict(s)" in result.stdout
    assert cache_stats(tmp_path)["entries"] == 0
    assert (tmp_path / "thumbnails" / "1-256" / "abc").exists()
    metrics = MetricCache(tmp_path)
    assert metrics.get("m1") == MetricValue(0.5, "ok")
    metrics.close()
