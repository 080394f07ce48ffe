"""`rubric-judge cache stats|clear|prune`: look after the verdict cache.

`stats` only reads, so it works on a read-only folder and reports a corrupted store without
touching it; `clear` and `prune` set a corrupted store aside (then there is nothing left to
remove) and refuse with exit 2 when the folder cannot be written (rubric_judge.cache.guard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Inspect or clean the verdict cache.", no_args_is_help=True)
DirOption = Annotated[Path | None, typer.Option("--cache-dir", help="Verdict cache (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).")]


@app.command()
def stats(cache_dir: DirOption = None) -> None:
    """Entries, size on disk and what they cost to obtain."""
    from rubric_judge.cache.verdicts import cache_stats, default_cache_dir
    from rubric_judge.cli.output import stdout

    info = cache_stats(cache_dir or default_cache_dir())
    corrupted = f" (the store is corrupted: {info['corrupted']}; `cache clear` sets it aside)" if info["corrupted"] else ""
    stdout.print(f"{info['directory']}: {info['entries']} verdict(s), {info['bytes'] / 1e6:.1f} MB on disk, "
                 f"{info['prompt_tokens']:,} prompt + {info['completion_tokens']:,} completion tokens, ${info['cost_usd']:.4f} paid{corrupted}",
                 markup=False)
    stdout.print(f"beside them: metric values {info['metrics_bytes'] / 1e6:.1f} MB, report thumbnails {info['thumbnails_bytes'] / 1e6:.1f} MB "
                 "(recomputed when missing; `cache clear` keeps them)", markup=False)
    for path, size in info["set_aside"]:
        stdout.print(f"set aside after corruption: {path} ({size / 1e6:.1f} MB); delete it once you no longer need it", markup=False)


@app.command()
def clear(cache_dir: DirOption = None, yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False) -> None:
    """Delete every cached verdict (the next run pays for every call again). Metric values and
    report thumbnails stay: they cost no money to recompute; delete the folders to drop them."""
    from rubric_judge.cache.verdicts import default_cache_dir
    from rubric_judge.cli.output import stdout

    directory = cache_dir or default_cache_dir()
    removed = _change(directory, lambda cache: cache.clear(),
                      confirm=None if yes else f"Delete all cached verdicts in {directory}?")
    stdout.print(f"removed {removed} cached verdict(s)")


@app.command()
def prune(
    cache_dir: DirOption = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Remove entries from this judge model.")] = None,
    older_than_days: Annotated[float | None, typer.Option("--older-than-days", min=0, help="Remove entries older than this.")] = None,
) -> None:
    """Remove some cached verdicts: by judge model and/or age."""
    from rubric_judge.cache.verdicts import default_cache_dir
    from rubric_judge.cli.output import stdout
    from rubric_judge.errors import UserError

    if judge is None and older_than_days is None:
        raise UserError("say what to prune: --judge MODEL and/or --older-than-days N (or use `cache clear`)")
    removed = _change(cache_dir or default_cache_dir(), lambda cache: cache.prune(judge, older_than_days))
    stdout.print(f"removed {removed} cached verdict(s)")


def _change(directory: Path, change, confirm: str | None = None) -> int:
    """Apply `change` to the verdict cache in `directory` opened for writing; returns what it returns.

    A cache that does not exist has nothing to remove (and is not created); one that cannot be
    written is a UserError (exit 2) before anything is asked or opened.
    """
    from rubric_judge.cache.guard import DISKCACHE_DB, require_writable
    from rubric_judge.cache.verdicts import CacheMode, VerdictCache
    from rubric_judge.errors import Location, Problem, UserError

    folder = Path(directory) / "verdicts"
    if not folder.exists():
        return 0
    require_writable(folder, (DISKCACHE_DB, f"{DISKCACHE_DB}-wal", f"{DISKCACHE_DB}-shm"))
    if confirm is not None and not typer.confirm(confirm):
        raise typer.Abort()
    with VerdictCache(directory, CacheMode.read_write) as cache:
        removed = change(cache)
        if not cache.writable:  # writing failed after all (the warning above says why)
            raise UserError(Problem(Location(folder), "the verdict cache could not be changed", fix="see the warning above"))
    return removed
