"""The caches under the cache folder survive corruption, read-only use and unwritable folders.

Verdicts, metric values and report thumbnails are caches: a truncated, garbled or overwritten
store is set aside under a timestamped name and rebuilt (the run goes on and pays again);
`--cache read-only` never creates or changes a file; a folder that cannot be written is only
read by a run, and `cache clear|prune` refuse it with exit 2 (rubric_judge/cache/guard.py).

Tests run as root, where permission bits stop no write: the genuinely unwritable folder is a
read-only bind mount in a private mount namespace (`unshare --mount`), which stops root too;
without root, `chmod -R a-w` does the same job.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rubric_judge.cache.guard import SET_ASIDE_MARK, DiskStore
from rubric_judge.cache.verdicts import CachedAnswer, CacheMode, VerdictCache
from rubric_judge.metrics import MetricCache
from rubric_judge.metrics.types import MetricValue
from rubric_judge.report.images import make_thumbnails
from rubric_judge.run import score

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
JUDGE = "openai/test-judge"
CLI = str(Path(sys.executable).with_name("rubric-judge"))

pytestmark = pytest.mark.usefixtures("cli_warnings")  # warnings as the CLI prints them


# Ways a store's SQLite file gets damaged ----------------------------------------------------


def truncate(db: Path) -> None:
    """`truncate -s 8192`: a copy or disk that stopped half-way."""
    os.truncate(db, 8192)


def garble(db: Path) -> None:
    """Random bytes over everything after the schema pages: opening succeeds, the first read of
    an entry fails (the mid-run path)."""
    size = db.stat().st_size
    with open(db, "r+b") as handle:
        handle.seek(16384)
        handle.write(random.Random(7).randbytes(size - 16384))


def overwrite_header(db: Path) -> None:
    """Something else written over the start of the file: not a database at all."""
    with open(db, "r+b") as handle:
        handle.write(b"this is not a sqlite file, really" * 4)


CORRUPTIONS = [truncate, garble, overwrite_header]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder under `folder`: size, mtime (ns) and content hash."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, digest(p) if p.is_file() else "")
            for p in sorted(folder.rglob("*"))}


def set_aside(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"{name}{SET_ASIDE_MARK}*"))


def one_line(text: str) -> str:
    """Captured stderr with the console's line wrapping undone."""
    return " ".join(text.split())


def options(server, tmp: Path, **extra) -> dict:
    """`score`'s keyword arguments for a run through the loopback judge."""
    return dict(rubric=EXAMPLE / "tasks", data=EXAMPLE / "manifest.jsonl", outputs=EXAMPLE / "outputs" / "good-model",
                model="good-model", judge=JUDGE, api_base=server.base_url, db=tmp / "results.duckdb",
                cache_dir=extra.pop("cache_dir", tmp / "cache"), concurrency=4, timeout=10.0, **extra)


def fill_verdicts(directory: Path) -> None:
    with VerdictCache(directory, CacheMode.read_write) as cache:
        cache.put("k1", CachedAnswer({"c1": {"satisfied": True}}, 100, 10, 0.002, "openai/gpt-4.1"))
        cache.put("k2", CachedAnswer({"c2": {"satisfied": False}}, 200, 20, 0.004, "openai/other"))
        for number in range(300):  # enough pages that the garbled part holds entries and the index
            cache.put(f"filler-{number}", CachedAnswer({"c": {"satisfied": True, "reasoning": "x" * 200}}, 1, 1, 0.0, "openai/gpt-4.1"))


def cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, CLI, *args], capture_output=True, text=True, timeout=300)


# 1. score on a corrupted verdict cache: warned, set aside, the run completes and pays again ----


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_score_on_a_corrupted_verdict_cache_sets_it_aside_and_pays_again(corrupt: Callable[[Path], None], judge_server, tmp_path: Path, capfd) -> None:
    assert score(**options(judge_server, tmp_path)).exit_code == 0
    paid = judge_server.request_count
    assert paid > 0
    db = tmp_path / "cache" / "verdicts" / "cache.db"
    corrupt(db)
    capfd.readouterr()

    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path)).exit_code == 0  # no traceback, no exit 1: the run completes
    assert judge_server.request_count == paid  # every call paid again
    [moved] = set_aside(tmp_path / "cache", "verdicts")
    assert (moved / "cache.db").stat().st_size >= 8192  # kept, for whoever wants to look
    err = one_line(capfd.readouterr().err)
    assert f"warning {tmp_path / 'cache' / 'verdicts'}: the verdict cache is corrupted" in err
    assert f"set it aside as {moved}" in err
    assert "Traceback" not in err

    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path)).exit_code == 0
    assert judge_server.request_count == 0  # the rebuilt cache holds this run's answers
    assert set_aside(tmp_path / "cache", "verdicts") == [moved]


def test_a_store_damaged_while_open_is_rebuilt_and_the_write_retried(tmp_path: Path, capfd) -> None:
    fill_verdicts(tmp_path)
    store = DiskStore(tmp_path, "verdicts", "verdict cache")
    try:
        garble(tmp_path / "verdicts" / "cache.db")  # under a store that opened fine
        assert store.set("new", {"fresh": True}) is True
        assert store.get("new") == {"fresh": True}
        assert store.get("k1") is None  # it held the old entries: gone with the set-aside store
    finally:
        store.close()
    assert len(set_aside(tmp_path, "verdicts")) == 1
    assert "the verdict cache is corrupted" in one_line(capfd.readouterr().err)


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_metric_cache_is_rebuilt_on_corruption(corrupt: Callable[[Path], None], tmp_path: Path, capfd) -> None:
    cache = MetricCache(tmp_path)
    for number in range(300):
        cache.put(f"m{number}", MetricValue(number / 300, "ok", "x" * 200))
    cache.close()
    corrupt(tmp_path / "metrics" / "cache.db")

    cache = MetricCache(tmp_path)
    try:
        assert cache.get("m5") is None
        cache.put("m5", MetricValue(0.5, "ok"))
        assert cache.get("m5") == MetricValue(0.5, "ok")
    finally:
        cache.close()
    assert len(set_aside(tmp_path, "metrics")) == 1
    assert f"warning {tmp_path / 'metrics'}: the metric cache is corrupted" in one_line(capfd.readouterr().err)


def test_thumbnail_cache_survives_a_file_in_its_place_and_garbled_entries(tmp_path: Path, capfd) -> None:
    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (300, 200), (10, 200, 30)).save(image)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "thumbnails").write_text("not a folder")  # the store's folder is a file
    first = make_thumbnails([image], max_side=64, cache_dir=cache)
    assert first.by_path[image].data_uri
    assert len(set_aside(cache, "thumbnails")) == 1
    assert "the thumbnail cache is corrupted" in one_line(capfd.readouterr().err)
    [entry] = [p for p in (cache / "thumbnails").rglob("*") if p.is_file()]
    entry.write_bytes(b"\xff\xfe garbage")
    again = make_thumbnails([image], max_side=64, cache_dir=cache)
    assert again.by_path[image].data_uri == first.by_path[image].data_uri  # made again, not the garbage
    assert entry.read_text().endswith(first.by_path[image].data_uri)  # and the entry replaced


# 2. cache stats|clear|prune on a corrupted cache --------------------------------------------


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_cache_commands_on_a_corrupted_cache(corrupt: Callable[[Path], None], tmp_path: Path) -> None:
    fill_verdicts(tmp_path)
    db = tmp_path / "verdicts" / "cache.db"
    corrupt(db)
    damaged = digest(db)

    stats = cli("cache", "stats", "--cache-dir", str(tmp_path))
    assert stats.returncode == 0, stats.stderr
    assert "Traceback" not in stats.stderr
    assert "0 verdict(s)" in stats.stdout and "the store is corrupted" in one_line(stats.stdout)
    assert digest(db) == damaged and not set_aside(tmp_path, "verdicts")  # stats reports, changes nothing

    prune = cli("cache", "prune", "--cache-dir", str(tmp_path), "--judge", "openai/other")
    assert prune.returncode == 0, prune.stderr
    [moved] = set_aside(tmp_path, "verdicts")
    assert f"set it aside as {moved}" in one_line(prune.stderr)
    assert "removed 0 cached verdict(s)" in prune.stdout
    assert (moved / "cache.db").stat().st_size >= 8192

    stats = cli("cache", "stats", "--cache-dir", str(tmp_path))
    assert stats.returncode == 0 and "0 verdict(s)" in stats.stdout and "corrupted" not in stats.stdout
    assert f"set aside after corruption: {moved}" in one_line(stats.stdout)


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_cache_clear_on_a_corrupted_cache_sets_it_aside(corrupt: Callable[[Path], None], tmp_path: Path) -> None:
    fill_verdicts(tmp_path)
    corrupt(tmp_path / "verdicts" / "cache.db")
    clear = cli("cache", "clear", "--yes", "--cache-dir", str(tmp_path))
    assert clear.returncode == 0, clear.stderr
    [moved] = set_aside(tmp_path, "verdicts")
    assert f"warning {tmp_path / 'verdicts'}: the verdict cache is corrupted" in one_line(clear.stderr)
    assert "removed 0 cached verdict(s)" in clear.stdout
    with VerdictCache(tmp_path, CacheMode.read_write) as cache:  # usable again
        cache.put("k", CachedAnswer({}, 1, 1, None, "j"))
        assert cache.get("k") is not None and moved.exists()


# 3. --cache read-only: reads only, never a write or a new file ------------------------------


def test_read_only_score_changes_and_creates_nothing(judge_server, tmp_path: Path) -> None:
    assert score(**options(judge_server, tmp_path)).exit_code == 0
    paid = judge_server.request_count
    before = snapshot(tmp_path / "cache")
    assert any(name.endswith("cache.db") for name in before)

    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, cache=CacheMode.read_only)).exit_code == 0
    assert judge_server.request_count == 0  # everything read from the cache...
    assert snapshot(tmp_path / "cache") == before  # ...without a byte, a timestamp or a file changing

    missing = tmp_path / "no-such-cache"
    judge_server.clear_requests()
    assert score(**options(judge_server, tmp_path, cache_dir=missing, cache=CacheMode.read_only)).exit_code == 0
    assert judge_server.request_count == paid  # an absent cache is an empty one
    assert not missing.exists()


def test_read_only_metric_values_and_thumbnails_write_nothing(tmp_path: Path) -> None:
    from PIL import Image

    cache = MetricCache(tmp_path)
    cache.put("m1", MetricValue(0.25, "ok"))
    cache.close()
    image = tmp_path / "a.png"
    Image.new("RGB", (300, 200), (200, 10, 30)).save(image)
    made = make_thumbnails([image], max_side=64, cache_dir=tmp_path)
    [entry] = [p for p in (tmp_path / "thumbnails").rglob("*") if p.is_file()]
    width, height, _ = entry.read_text().split(" ", 2)
    marker = "data:image/png;base64,bWFya2Vy"  # what only the cache can answer
    entry.write_text(f"{width} {height} {marker}")
    before = snapshot(tmp_path)

    cache = MetricCache(tmp_path, writes=False)
    assert cache.get("m1") == MetricValue(0.25, "ok")
    cache.put("m2", MetricValue(0.5, "ok"))
    assert cache.get("m2") is None
    cache.close()
    assert make_thumbnails([image], max_side=64, cache_dir=tmp_path, cache_read_only=True).by_path[image].data_uri == marker
    assert make_thumbnails([image], max_side=32, cache_dir=tmp_path, cache_read_only=True).by_path[image].data_uri != made.by_path[image].data_uri
    assert snapshot(tmp_path) == before  # nothing written, no -wal/-shm, no thumbnails/v1-32

    empty = tmp_path / "absent"
    cache = MetricCache(empty, writes=False)
    assert cache.get("m1") is None
    cache.close()
    make_thumbnails([image], max_side=64, cache_dir=empty, cache_read_only=True)
    assert not empty.exists()


# 4. A folder that cannot be written, even by root ------------------------------------------


def read_only_view(folder: Path) -> tuple[str, ...]:
    """A command prefix under which `folder` cannot be written: a read-only bind mount in a
    private mount namespace (root), or nothing after `chmod -R a-w` (anyone else)."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return ()
    prefix = ("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
              f'mount --bind -o ro "{folder}" "{folder}" && exec "$@"', "sh")
    if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only mount here (no unshare or no CAP_SYS_ADMIN)")
    probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True)
    assert probe.returncode != 0 and not (folder / "probe").exists()  # the view really is read-only
    return prefix


def test_unwritable_cache_folder(judge_server, tmp_path: Path) -> None:
    root = tmp_path / "mounted"
    assert score(**options(judge_server, tmp_path, cache_dir=root / "cache")).exit_code == 0
    paid = judge_server.request_count
    cache_dir = str(root / "cache")
    before = snapshot(root)
    prefix = read_only_view(root)
    score_args = ("score", str(EXAMPLE / "tasks"), "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs", str(EXAMPLE / "outputs" / "good-model"),
                  "--model", "good-model", "--judge", JUDGE, "--api-base", judge_server.base_url, "--db", str(tmp_path / "ro.duckdb"),
                  "--cache-dir", cache_dir)

    stats = cli("cache", "stats", "--cache-dir", cache_dir, prefix=prefix)
    assert stats.returncode == 0, stats.stderr
    assert f"{paid} verdict(s)" in stats.stdout
    for command in (("clear", "--yes"), ("prune", "--older-than-days", "0")):
        refused = cli("cache", *command, "--cache-dir", cache_dir, prefix=prefix)
        assert refused.returncode == 2, refused.stderr
        assert "the cache folder is not writable" in one_line(refused.stderr) and "Traceback" not in refused.stderr

    judge_server.clear_requests()
    run = cli(*score_args, "--cache", "read-only", prefix=prefix)
    assert run.returncode == 0, run.stderr
    assert judge_server.request_count == 0 and "warning" not in run.stderr

    judge_server.clear_requests()
    run = cli(*score_args, prefix=prefix)  # read-write asked: warned, reads what is there, goes on
    assert run.returncode == 0, run.stderr
    assert judge_server.request_count == 0
    assert f"cannot write the verdict cache ({root / 'cache' / 'verdicts'}" in one_line(run.stderr)
    assert snapshot(root) == before
