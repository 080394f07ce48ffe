"""The Jinja environment and the page: ReportData + thumbnails -> one self-contained HTML string.

Safety rules, enforced here and in the templates:

* autoescaping is on for every template, so anything that comes from data (criterion texts,
  reasoning, model and file names) is text, never markup; nothing from data is marked safe;
* data for the script goes through `|tojson` (which escapes <, >, & and '), everything else the
  script needs sits in escaped data-* attributes;
* a Content-Security-Policy meta tag forbids every network load and allows only the page's own
  script, by hash: even markup that slipped past escaping could neither run nor fetch.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from rubric_judge.report import svg
from rubric_judge.report.images import Thumbnails
from rubric_judge.report.model import Media, ReportData, Section

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class ImageView:
    """How the page shows one image: an embedded thumbnail (CSS class), a link, or why not."""

    kind: str  # thumb | link | missing | error
    cls: str = ""
    url: str = ""
    width: int = 0
    height: int = 0
    message: str = ""


def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its suffix
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=fmt_num, pct=fmt_pct, usd=fmt_usd, signed=fmt_signed, ms=fmt_ms, when=fmt_when, duration=fmt_duration,
                       thousands=fmt_count, basename=lambda p: Path(str(p)).name)
    return env


def render_page(data: ReportData, thumbnails: Thumbnails | None, out: Path, link_images: bool) -> str:
    """The whole page as one string."""
    env = environment()
    script = env.get_template("report.js").render()
    # The CSP allows exactly this script; the browser hashes the text between the tags.
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    views = _image_views(data, thumbnails, out, link_images)
    charts = {
        section.key: {
            "leaderboard": svg.leaderboard_chart(section, score_format(section)),
            "distribution": svg.distribution_chart(section) if section.cards else None,
            "difference": svg.difference_chart(section.comparison, dict(section.dimensions), signed_format(section))
            if section.comparison and section.comparison.paired else None,
        }
        for section in data.sections
    }
    ids = _card_ids(data)

    def card_id(section: str, run: int, sample_id: str) -> str:
        # A sample compared but scored only in the other run links to that run's card.
        return ids.get((section, run, sample_id)) or ids.get((section, None, sample_id), "")

    return env.get_template("report.html.j2").render(
        data=data, charts=charts, views=views, thumbnails=thumbnails.distinct if thumbnails else (), link_images=link_images,
        script_hash=script_hash, score_format=score_format, signed_format=signed_format, filters=_filters,
        describe_method=describe_method, card_id=card_id, meta=_meta(data),
        offline_judge=any(run.config.get("offline_judge") for run in data.runs),
    )


def _card_ids(data: ReportData) -> dict[tuple[str, int | None, str], str]:
    """Element ids of the cards, built from positions (never from data, which may hold anything)."""
    ids: dict[tuple[str, int | None, str], str] = {}
    for section in data.sections:
        for n, card in enumerate(section.cards):
            ids[(section.key, card.run, card.sample_id)] = f"{section.key}-card-{n}"
            ids.setdefault((section.key, None, card.sample_id), f"{section.key}-card-{n}")
    return ids


def _meta(data: ReportData) -> dict[str, Any]:
    """What the page's script reads (emitted with |tojson), also handy for tools that parse the page."""
    return {
        "generated_at": data.generated_at.isoformat() + "Z",
        "database": data.db_path.name,
        "intervals": {"level": data.level, "resamples": data.resamples, "seed": data.seed},
        "sections": {
            s.key: {"rubric": s.rubric_id, "version": s.rubric_version, "cards": len(s.cards),
                    "runs": [{"run_id": r.run_id, "label": r.label, "model": r.model_name, "judge": r.judge_model, "status": r.status,
                             "samples_scored": r.overall.samples, "samples_total": r.overall.samples_total} for r in s.runs]}
            for s in data.sections
        },
    }


def _image_views(data: ReportData, thumbnails: Thumbnails | None, out: Path, link_images: bool) -> dict[tuple[str, str | None], ImageView]:
    """(field, stored value) -> view; the same file is one view wherever it appears."""
    views: dict[tuple[str, str | None], ImageView] = {}
    for media in _all_media(data):
        key = (media.field, media.value)
        if key in views:
            continue
        if media.value is None:
            views[key] = ImageView("missing", message="no output from the model")
        elif media.path is None:
            views[key] = ImageView("missing", message=f"missing: {media.value}")
        elif link_images:
            views[key] = ImageView("link", url=_relative_url(media.path, out.parent))
        else:
            thumb = thumbnails.by_path.get(media.path) if thumbnails else None
            if thumb is None or thumb.data_uri is None:
                views[key] = ImageView("error", message=f"{thumb.error if thumb else 'not read'}: {media.value}")
            else:
                views[key] = ImageView("thumb", cls=thumb.key, width=thumb.width, height=thumb.height)
    return views


def image_paths(data: ReportData) -> list[Path]:
    return [m.path for m in _all_media(data) if m.path is not None]


def _all_media(data: ReportData) -> list[Media]:
    return [m for section in data.sections for card in section.cards for m in card.images]


def _relative_url(path: Path, base: Path) -> str:
    try:
        return pathname2url(os.path.relpath(path.resolve(), base.resolve()))
    except ValueError:  # another drive (Windows): only an absolute URL reaches it
        return path.resolve().as_uri()


def _filters(section: Section) -> dict[str, Any]:
    """The options of a section's filter bar."""
    statuses = [("fail", "failed"), ("unscored", "unscored / error"), ("missing", "missing output"), ("pass", "passed")]
    present = {v.outcome for card in section.cards for v in card.verdicts}
    return {
        "runs": [(run.index, run.label) for run in section.runs],
        "dimensions": list(section.dimensions),
        "categories": list(section.categories),
        "statuses": [(key, label) for key, label in statuses if key in present],
    }


# --- formatting -----------------------------------------------------------------------------

DASH = "\u2014"


def score_format(section: Section) -> str:
    return "{:.3f}" if section.method == "weighted_points" else "{:.2f}"


def signed_format(section: Section) -> str:
    return "{:+.3f}" if section.method == "weighted_points" else "{:+.2f}"


def fmt_num(value: float | None, spec: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return spec.format(value).replace("-", "\u2212")


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}%"


def fmt_usd(value: float | None) -> str:
    if value is None:
        return DASH
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def fmt_signed(value: float) -> str:
    text = f"{value:+g}"
    return text.replace("-", "\u2212")


def fmt_ms(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def fmt_when(value: datetime | None) -> str:
    return DASH if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_count(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def describe_method(section: Section) -> Mapping[str, str]:
    run = section.runs[0]
    if section.method == "weighted_points":
        return {"name": "weighted points", "detail": "per sample \u03a3 w\u00b7met / \u03a3 positive w (negative weights penalise), mean over samples"}
    if section.method == "mean_scale":
        return {"name": "mean scale", "detail": f"weighted mean \u03a3 w\u00b7score / \u03a3 w of {run.scale_min}\u2013{run.scale_max} scores, mean over samples"}
    criterion = run.pass_criterion or "weighted mean of all criteria"
    return {"name": "pass rate", "detail": f"a sample passes when {criterion} \u2265 {fmt_num(run.threshold, '{:g}')}"}
