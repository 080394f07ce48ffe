"""Static HTML report: one self-contained file from the results database.

    model.py    the immutable dataclasses the page renders (runs, scores, intervals, cards, comparison)
    queries.py  the SQL: rows from DuckDB -> model's dataclasses (load_report_data)
    fields.py   which of a sample's fields are shown as images, which as text
    images.py   thumbnails as data: URIs, in parallel, one per distinct file content
    svg.py      chart geometry (bars with interval whiskers, histograms, a forest plot)
    render.py   the Jinja environment (autoescaping on), formatting and the page
    templates/  the page, its style sheet and its small vanilla script

The page fetches nothing (a Content-Security-Policy forbids it): images are embedded (or, with
`link_images`, linked as relative file paths), charts are inline SVG, the script is inline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rubric_judge.errors import UserError


@dataclass(frozen=True)
class ReportResult:
    path: Path
    bytes: int
    seconds: float
    runs: int
    cards: int
    images: int  # distinct images embedded (0 when linked)
    image_bytes: int  # their share of the file


def build_report(db: Path, out: Path, rubric: str | None = None, compare: Sequence[str] = (), resamples: int = 1000, seed: int = 0,
                 level: float = 0.95, link_images: bool = False, thumb_size: int = 256, max_embed_mb: float = 64.0,
                 cache_dir: Path | None = None, cache_read_only: bool = False) -> ReportResult:
    """Read `db`, render the report and write it to `out` atomically; thumbnails are kept in
    `cache_dir` (when given) for the next report over the same images, or with
    `cache_read_only` only read from there."""
    from rubric_judge.files import write_atomic
    from rubric_judge.report.images import make_thumbnails
    from rubric_judge.report.queries import load_report_data
    from rubric_judge.report.render import image_paths, render_page

    start = time.perf_counter()
    out = Path(out)
    _check_options(out, resamples, level, thumb_size, max_embed_mb)
    data = load_report_data(db, rubric, compare, resamples, seed, level)
    thumbnails = None if link_images else make_thumbnails(image_paths(data), thumb_size, max_embed_mb, cache_dir=cache_dir,
                                                             cache_read_only=cache_read_only)
    html = render_page(data, thumbnails, out, link_images)
    try:
        write_atomic(out, html)
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return ReportResult(out, len(html.encode("utf-8")), time.perf_counter() - start, len(data.runs),
                        sum(len(s.cards) for s in data.sections), len(thumbnails.distinct) if thumbnails else 0,
                        thumbnails.total_bytes if thumbnails else 0)


def _check_options(out: Path, resamples: int, level: float, thumb_size: int, max_embed_mb: float) -> None:
    """Fail before any work on options that cannot succeed."""
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out / 'report.html'}")
    if not out.parent.is_dir():
        raise UserError(f"cannot write the report to {out}: directory {out.parent} does not exist")
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1, not {resamples}")
    if not 0 < level < 1:
        raise UserError(f"--level must be between 0 and 1 (e.g. 0.95), not {level}")
    if not 16 <= thumb_size <= 2048:
        raise UserError(f"--thumb-size must be between 16 and 2048 pixels, not {thumb_size}")
    if max_embed_mb <= 0:
        raise UserError(f"--max-embed-mb must be positive, not {max_embed_mb}")
