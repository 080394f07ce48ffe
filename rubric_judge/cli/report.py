"""`rubric-judge report`: one self-contained HTML page from the results database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
    db: Annotated[Path | None, typer.Option("--db", help="Results database (default: $RUBRIC_JUDGE_DB, else ./rubric-judge.duckdb).")] = None,
    rubric: Annotated[str | None, typer.Option("--rubric", help="Only this rubric id.")] = None,
    compare: Annotated[list[str] | None, typer.Option("--compare", help="A run to compare (model name or run id); give it twice. Default: the two best runs of each rubric.")] = None,
    link_images: Annotated[bool, typer.Option("--link-images", help="Link the image files (relative paths) instead of embedding thumbnails: a smaller file that works only next to the images.")] = False,
    thumb_size: Annotated[int, typer.Option("--thumb-size", help="Longest side of embedded thumbnails, pixels.")] = 256,
    max_embed_mb: Annotated[float, typer.Option("--max-embed-mb", help="Refuse to embed more than this many MB of thumbnails (then use --link-images).")] = 64.0,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Where thumbnails are kept for the next report (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).")] = None,
    cache: Annotated[str, typer.Option("--cache", help="Thumbnail cache: read-write | read-only (use what is there, write nothing) | off.")] = "read-write",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor keep thumbnails in the cache (same as --cache off).")] = False,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples for the intervals.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed (same seed, same intervals).")] = 0,
    level: Annotated[float, typer.Option("--level", help="Confidence level of the intervals.")] = 0.95,
) -> None:
    """Write a static HTML report: leaderboard with bootstrap intervals, charts, judge cost, a
    two-model comparison and per-sample cards with images and every verdict. Works offline."""
    from rubric_judge.cache.verdicts import default_cache_dir
    from rubric_judge.cli.output import stdout
    from rubric_judge.errors import UserError
    from rubric_judge.report import build_report
    from rubric_judge.store.db import default_db_path

    if cache not in ("read-write", "read-only", "off"):
        raise UserError(f"--cache must be one of read-write, read-only, off, not {cache!r}")
    db = db or default_db_path()
    result = build_report(db, out, rubric=rubric, compare=compare or (), resamples=resamples, seed=seed, level=level,
                          link_images=link_images, thumb_size=thumb_size, max_embed_mb=max_embed_mb,
                          cache_dir=None if no_cache or cache == "off" else cache_dir or default_cache_dir(),
                          cache_read_only=cache == "read-only")
    images = "images linked" if link_images else f"{result.images} thumbnails embedded ({result.image_bytes / 1048576:.1f} MB)"
    stdout.print(f"wrote {result.path} ({result.bytes / 1048576:.1f} MB): {result.runs} runs, {result.cards} sample cards, {images}, "
                 f"in {result.seconds:.1f} s")
