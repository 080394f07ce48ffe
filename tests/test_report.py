"""`rubric-judge report` without a browser: content, escaping, images, options and errors.

The browser checks (rendering, console, network, filters) are in test_report_browser.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from report_fixtures import IMG, PAYLOADS, SCRIPT, SVG, TRUST_RATERS, example_db, trust_db, xss_db

from rubric_judge.errors import UserError
from rubric_judge.report import build_report
from rubric_judge.report.images import make_thumbnails
from rubric_judge.report.queries import load_report_data
from rubric_judge.report.svg import nice_axis

CLI = str(Path(sys.executable).with_name("rubric-judge"))


@pytest.fixture(scope="module")
def examples() -> Path:
    return example_db()


@pytest.fixture(scope="module")
def example_html(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    build_report(examples, out)
    return out.read_text(encoding="utf-8")


def _leaderboard_rows(html: str) -> list[str]:
    table = re.search(r'<table id="leaderboard">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert table, "no #leaderboard table"
    return re.findall(r"<tr\b[^>]*>(.*?)</tr>", table.group(1), re.S)


def _start_tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    from html.parser import HTMLParser

    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

    Collect().feed(html)
    return tags


def test_store_keeps_criterion_texts_and_field_kinds(examples: Path) -> None:
    con = duckdb.connect(str(examples), read_only=True)
    try:
        # Every verdict has its criterion's text, one row per verdict.
        missing = con.execute("""SELECT count(*) FROM verdicts v LEFT JOIN criteria c USING (run_id, sample_id, criterion_id)
                                 WHERE c.text IS NULL""").fetchone()[0]
        assert missing == 0
        assert con.execute("SELECT count(*) FROM criteria").fetchone()[0] == con.execute("SELECT count(*) FROM verdicts").fetchone()[0]
        fields = {r[0]: r[1:] for r in con.execute(
            "SELECT field, kind, is_output, label, position FROM run_fields r JOIN runs USING (run_id) WHERE model_name = 'good-model'").fetchall()}
        assert fields["generated_image"][:2] == ("image", True) and fields["generated_image"][3] == 1
        assert fields["reference_image"][:2] == ("image", False) and fields["reference_image"][3] == 0
        assert fields["prompt"][:2] == ("text", False)
        name = con.execute("SELECT DISTINCT dimension_name FROM criteria WHERE dimension = 'content_accuracy'").fetchone()[0]
        assert name == "Content Accuracy"
    finally:
        con.close()


def test_example_report_has_every_run_its_intervals_and_nothing_remote(example_html: str) -> None:
    rows = _leaderboard_rows(example_html)
    assert len(rows) == 3
    for model in ("good-model", "weak-model", "demo-model"):
        assert model in example_html
    # Leaderboard scores carry their bootstrap interval.
    assert re.search(r'<span class="score">0\.\d{3}</span>\s*<span class="ci">\[', rows[0])
    assert "Content-Security-Policy" in example_html and "default-src 'none'" in example_html
    # Nothing is loaded from anywhere: no external script, style sheet, font or image.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", example_html, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", example_html, re.I)
    assert "<link rel=\"stylesheet\"" not in example_html and "@import" not in example_html and "@font-face" not in example_html
    assert "<script src" not in example_html


def test_example_report_shows_cards_comparison_costs_and_metrics(example_html: str, examples: Path) -> None:
    data = load_report_data(examples)
    illugen = next(s for s in data.sections if s.rubric_id == "illugenbench")
    medgen = next(s for s in data.sections if s.rubric_id.startswith("medgen"))
    # Cards: one per sample and run, three images side by side for MedGEN (input, ground truth, output).
    assert len(illugen.cards) == 12 and len(medgen.cards) == 6
    edit = next(c for c in medgen.cards if c.sample_id == "edit-mri-remove-lesion")
    assert [m.field for m in edit.images] == ["input_image", "ground_truth_image", "output_image"]
    assert all(m.path is not None and m.path.is_file() for m in edit.images)
    # The weak model produced no image for one task: a missing output, shown as such.
    missing = [c for c in illugen.cards if c.missing_outputs]
    assert [c.sample_id for c in missing] == ["dna-double-helix"]
    assert all(v.outcome == "missing" for v in missing[0].verdicts)
    assert "no output from the model" in example_html
    # Failed criteria come first in every card.
    for card in illugen.cards:
        order = [v.outcome for v in card.verdicts]
        assert order == sorted(order, key=["fail", "unscored", "missing", "pass"].index)
    # Criterion texts, signed weights and reasoning reach the page.
    assert "The loop of Henle dips below the cortex-medulla boundary into the medulla." in example_html
    assert "\u22123</td>" in example_html  # a negative weight, with a real minus sign
    assert "offline judge (not a VLM)" in example_html
    # Two-model view: paired intervals per dimension, per-task differences, disagreements.
    cmp = illugen.comparison
    assert cmp is not None and (cmp.a.model_name, cmp.b.model_name) == ("good-model", "weak-model")
    assert cmp.paired[0].dimension == "overall" and all(r.ci_low is not None for r in cmp.paired)
    diffs = [abs(t.difference) for t in cmp.tasks if t.difference is not None]
    assert diffs == sorted(diffs, reverse=True)
    con = duckdb.connect(str(examples), read_only=True)
    expected = con.execute("""
        SELECT count(*) FROM verdicts a JOIN verdicts b USING (sample_id, criterion_id, replicate)
        WHERE a.run_id = ? AND b.run_id = ? AND a.status = 'ok' AND b.status = 'ok' AND a.met <> b.met""", [cmp.a.run_id, cmp.b.run_id]).fetchone()[0]
    con.close()
    assert cmp.disagreement_count == expected > 0
    assert 'id="s0-compare"' in example_html and "Where the verdicts differ" in example_html
    # Judge cost and cache, and the MedGEN metric summary.
    assert "Runs: judge cost, cache and latency" in example_html
    assert "Pixel and text metrics" in example_html and ">ssim<" in example_html
    assert "Offline judge." in example_html


def test_markup_in_the_data_is_escaped(tmp_path: Path) -> None:
    out = tmp_path / "xss.html"
    build_report(xss_db(tmp_path / "data"), out)
    html = out.read_text(encoding="utf-8")
    for payload in PAYLOADS:
        assert payload not in html, payload
    # Parsed as a browser would: no element or attribute came from the data. The only scripts are
    # the page's JSON block and its code, every <svg> is a chart, no <img> (thumbnails are CSS),
    # and no event-handler attribute anywhere.
    tags = _start_tags(html)
    assert [dict(a).get("type") for t, a in tags if t == "script"] == ["application/json", None]
    assert all(dict(a).get("class") == "chart" for t, a in tags if t == "svg")
    assert not [a for t, a in tags if t == "img"]
    assert not [(t, name) for t, a in tags for name, _ in a if name.startswith("on")]
    # Escaped, the data still reads as written.
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;window.__pwned=1&#34;&gt;" in html
    # In the JSON for the script, < > & ' are escaped too: no "</script>" can end the block early.
    meta = re.search(r'<script type="application/json" id="report-meta">(.*?)</script>', html, re.S).group(1)
    assert "<" not in meta and ">" not in meta and "\\u003cscript\\u003e" in meta
    # File names too: the missing generated image is a placeholder naming the (escaped) path.
    assert "missing: " in html and f"missing {SCRIPT}" not in html


def test_a_missing_image_file_is_a_placeholder(examples: Path, tmp_path: Path) -> None:
    copy = tmp_path / "moved.duckdb"
    copy.write_bytes(examples.read_bytes())
    con = duckdb.connect(str(copy))
    con.execute("""UPDATE samples SET fields = json_merge_patch(fields, '{"reference_image": "/nowhere/gone.png"}')
                   WHERE sample_id = 'heart-chambers'""")
    con.close()
    out = tmp_path / "r.html"
    build_report(copy, out, rubric="illugenbench")
    html = out.read_text(encoding="utf-8")
    assert html.count("missing: /nowhere/gone.png") == 2  # one card per model


def test_link_images_links_relative_files(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "linked.html"
    result = build_report(examples, out, link_images=True)
    html = out.read_text(encoding="utf-8")
    assert result.images == 0 and "data:image" not in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert sources and all(not s.startswith(("/", "file:", "http")) for s in sources)
    assert all((out.parent / s.replace("%20", " ")).resolve().is_file() for s in sources)


def test_embedded_images_are_thumbnails_under_a_cap(examples: Path, tmp_path: Path) -> None:
    result = build_report(examples, tmp_path / "r.html", thumb_size=64)
    assert 0 < result.images <= 31 and result.image_bytes < 31 * 64 * 64 * 3
    with pytest.raises(UserError, match="--link-images"):
        build_report(examples, tmp_path / "r2.html", max_embed_mb=0.01)
    assert not (tmp_path / "r2.html").exists()


def test_thumbnails_handle_odd_images(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.new("RGBA", (600, 100), (10, 200, 30, 128)).save(wide)
    deep = tmp_path / "ct16.png"
    Image.fromarray((np.arange(200 * 300).reshape(200, 300) % 4096).astype(np.uint16)).save(deep)
    photo = tmp_path / "photo.jpg"
    Image.effect_noise((900, 700), 60).convert("RGB").save(photo, quality=90)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    copy = tmp_path / "copy.png"
    copy.write_bytes(wide.read_bytes())
    thumbs = make_thumbnails([wide, deep, photo, broken, copy], max_side=128)
    assert (thumbs.by_path[wide].width, thumbs.by_path[wide].height) == (128, 21)
    assert max(thumbs.by_path[deep].width, thumbs.by_path[deep].height) == 128
    assert thumbs.by_path[photo].data_uri.startswith("data:image/jpeg;base64,")  # noise: JPEG is smaller
    assert thumbs.by_path[broken].data_uri is None and "unreadable" in thumbs.by_path[broken].error
    assert thumbs.by_path[copy] is thumbs.by_path[wide] and len(thumbs.distinct) == 4  # same bytes, one thumbnail


def test_thumbnail_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from rubric_judge.report import images

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (300, 200), (80 * i, 40, 200)).save(paths[-1])
    first = make_thumbnails(paths, 64, cache_dir=tmp_path / "cache")

    def fail(*args: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(images, "_thumbnail", fail)
    second = make_thumbnails(paths, 64, cache_dir=tmp_path / "cache")
    assert [second.by_path[p] for p in paths] == [first.by_path[p] for p in paths]


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "RUBRIC_JUDGE_CACHE_DIR": str(tmp_path / "cache")}


def test_compare_and_bootstrap_options(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    build_report(examples, out, rubric="illugenbench", compare=("weak-model", "good-model"), resamples=200, seed=7)
    html = out.read_text(encoding="utf-8")
    assert "weak-model (A) vs good-model (B)" in html
    assert "200 resamples, seed 7" in html
    assert "medgen" not in html.split("</nav>")[0].split("<nav")[1]


def test_an_unfinished_run_shows_its_status_reason_and_coverage(examples: Path, tmp_path: Path) -> None:
    """A run that stopped part-way is marked as such, with why, and its scores read as partial
    ("4 of 6 scored"), not as if they covered the whole manifest."""
    import shutil

    db = tmp_path / "interrupted.duckdb"
    shutil.copy(examples, db)
    reason = "the process writing this run ended before it finished (killed or crashed)"
    con = duckdb.connect(str(db))
    try:
        (run_id,) = con.execute("SELECT run_id FROM runs WHERE model_name = 'weak-model'").fetchone()
        con.execute("UPDATE runs SET status = 'interrupted', status_detail = ? WHERE run_id = ?", [reason, run_id])
        # The judge never got to two of its samples: they are in the manifest, without verdicts.
        unjudged = [s for (s,) in con.execute("SELECT sample_id FROM samples WHERE run_id = ? ORDER BY sample_id LIMIT 2", [run_id]).fetchall()]
        con.execute("DELETE FROM verdicts WHERE run_id = ? AND sample_id IN (?, ?)", [run_id, *unjudged])
        total = con.execute("SELECT count(*) FROM samples WHERE run_id = ?", [run_id]).fetchone()[0]
    finally:
        con.close()
    out = tmp_path / "r.html"
    build_report(db, out)
    html = out.read_text(encoding="utf-8")

    rows = {("weak" if "weak-model" in row else "good" if "good-model" in row else "other"): row for row in _leaderboard_rows(html)}
    weak, good = rows["weak"], rows["good"]
    assert "interrupted" in weak and reason in weak
    assert f"{total - 2} of {total} scored" in weak
    assert f"{total} of {total} scored" in good and "finished" in good and reason not in good
    # The run table of its rubric says the same, and the overview says which runs are partial.
    runs_table = html.split("Runs: judge cost, cache and latency")[1].split("</table>")[0]
    assert "interrupted" in runs_table and reason in runs_table
    notes = html.split('<ul class="notes">')[1].split("</ul>")[0]
    assert "weak-model" in notes and "interrupted" in notes


def test_imported_runs_without_criterion_texts_still_render(tmp_path: Path) -> None:
    from rubric_judge.rubrics.loader import load_rubric_set
    from rubric_judge.store.db import ResultStore, RunInfo, write_imported_run

    store = ResultStore(tmp_path / "imported.duckdb")
    rubric = load_rubric_set("builtin:illugenbench/base.yaml")[0]
    write_imported_run(store, RunInfo(rubric, "legacy", "imported:results.json", None, {}), [["t1", "Anatomical", None, [], '{"prompt": "p"}']],
                       [], [["t1", "scientific_accuracy-1", 0, "scientific_accuracy", 5.0, True, None, 0.8, "ok", "ok", None]])
    store.close()
    out = tmp_path / "r.html"
    build_report(tmp_path / "imported.duckdb", out)
    html = out.read_text(encoding="utf-8")
    assert "scientific_accuracy-1" in html and "criteria are shown by id" in html


@pytest.mark.parametrize(("args", "message"), [
    (["--db", "{tmp}/none.duckdb"], "does not exist"),
    (["--db", "{examples}", "--rubric", "nope"], "no runs of rubric 'nope'"),
    (["--db", "{empty}"], "holds no runs"),
    (["--db", "{examples}", "--out", "{tmp}/no/such/dir/r.html"], "does not exist"),
    (["--db", "{examples}", "--out", "{tmp}"], "is a directory"),
    (["--db", "{examples}", "--compare", "good-model"], "exactly two"),
    (["--db", "{examples}", "--compare", "good-model", "--compare", "demo-model"], "no rubric"),
    (["--db", "{examples}", "--resamples", "0"], "--resamples must be at least 1"),
])
def test_bad_input_is_a_user_error_with_exit_code_2(examples: Path, tmp_path: Path, args: list[str], message: str) -> None:
    from rubric_judge.store.db import ResultStore

    ResultStore(tmp_path / "empty.duckdb").close()
    argv = [a.format(tmp=tmp_path, examples=examples, empty=tmp_path / "empty.duckdb") for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "r.html")]
    done = subprocess.run([CLI, "report", *argv], capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr


def test_cli_writes_the_report_and_imports_lazily(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    done = subprocess.run([CLI, "report", "--db", str(examples), "--out", str(out)], capture_output=True, text=True, timeout=120,
                          env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "3 runs" in done.stdout and out.stat().st_size > 10_000
    assert not list(tmp_path.glob("*.tmp"))
    assert len(list((tmp_path / "cache" / "thumbnails").rglob("*"))) > 20  # thumbnails kept for the next report
    # `rubric-judge --help` must stay instant: the command module imports no heavy library.
    code = "import sys, rubric_judge.cli.report; print(sorted(m for m in ('jinja2', 'duckdb', 'PIL', 'litellm') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_nice_axis_rounds_outwards() -> None:
    assert nice_axis(0, 1) == (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    low, high, ticks = nice_axis(-0.33, 0.9)
    assert low <= -0.33 and high >= 0.9 and ticks[0] == low and ticks[-1] == high


def test_payload_constants_are_markup() -> None:
    # Guard the XSS fixtures themselves: each payload would be live markup if unescaped.
    assert SCRIPT.startswith("<script>") and IMG.startswith("<img") and "<svg onload" in SVG


# --- How far to trust this judge ----------------------------------------------------------------

def _trust_section(html: str) -> str:
    found = re.search(r'<section class="panel trust" id="s0-trust">(.*?)</section>', html, re.S)
    assert found, "no trust section"
    return found.group(1)


def _cell_text(fragment: str) -> str:
    import html as html_lib

    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def _table_rows(section: str, cls: str) -> dict[str, list[str]]:
    """First cell's text -> the other cells' texts, of the table with class `cls`."""
    table = re.search(rf'<table class="[^"]*\b{cls}\b[^"]*">.*?<tbody>(.*?)</tbody>', section, re.S)
    assert table, cls
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S):
        cells = [_cell_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        out[cells[0]] = cells[1:]
    return out


def _shown(value: float, ci_low: float, ci_high: float, n: int, pct: bool = False) -> str:
    def f(x: float) -> str:
        return f"{100 * x:.1f}%" if pct else f"{x:.3f}".replace("-", "\u2212")
    return f"{f(value)} [{f(ci_low)}, {f(ci_high)}] · n={n:,}"


def test_trust_section_shows_agree_numbers_and_links_disagreements_to_cards(tmp_path: Path) -> None:
    from rubric_judge import agree

    db = trust_db(tmp_path / "data")
    out = tmp_path / "report.html"
    build_report(db, out, resamples=300, seed=3)
    html = out.read_text(encoding="utf-8")
    section = _trust_section(html)
    assert "computed for this report" in section
    frame = agree(db, resamples=300, seed=3, store=False)

    def expect(compared: str, statistic: str, level: str | None = None, pct: bool = False) -> str:
        rows = frame[(frame["compared"] == compared) & (frame["statistic"] == statistic) & (frame["group"] == "overall")]
        if level:
            rows = rows[rows["level"] == level]
        assert len(rows) == 1, (compared, statistic)
        r = rows.iloc[0]
        return _shown(r["value"], r["ci_low"], r["ci_high"], int(r["n"]), pct)

    judge = _table_rows(section, "trust-judge")
    assert judge["judge vs every expert (pooled pairs)"][:2] == [expect("judge vs raters (pooled pairs)", "balanced_f1"),
                                                                 expect("judge vs raters (pooled pairs)", "cohen_kappa")]
    for rater in TRUST_RATERS:
        assert judge[f"judge vs rater {rater}"] == [expect(f"judge vs rater {rater}", "balanced_f1"), expect(f"judge vs rater {rater}", "cohen_kappa"),
                                                    expect(f"judge vs rater {rater}", "base_rate", pct=True)]
    experts = _table_rows(section, "trust-experts")
    for rater in TRUST_RATERS:
        assert experts[f"rater {rater} vs the other raters"][0] == expect(f"rater {rater} vs other raters (leave-one-out)", "balanced_f1")
    assert experts["experts (mean over raters)"] == [expect("raters (leave-one-out)", "balanced_f1"), expect("raters (leave-one-out)", "cohen_kappa")]
    alphas = _table_rows(section, "trust-alpha")
    assert alphas["experts only (without the judge)"][1] == expect("raters", "krippendorff_alpha", "nominal")
    assert alphas["experts with the judge as one more coder"][1] == expect("raters + judge", "krippendorff_alpha", "nominal")
    consistency = _cell_text(re.search(r'<table class="trust-consistency">(.*?)</table>', section, re.S).group(1))
    run_id = frame["run_id"].iloc[0]
    assert expect(f"replicates of run {run_id}", "flip_rate", pct=True) in consistency
    probe = next(c for c in frame["compared"] if c.startswith("probe verbosity"))
    assert expect(probe, "flip_rate", pct=True) in consistency
    # The judge's F1 placed in the experts' leave-one-out range, in a sentence.
    pooled = frame[(frame["compared"] == "judge vs raters (pooled pairs)") & (frame["statistic"] == "balanced_f1")]["value"].iloc[0]
    baseline = frame[frame["compared"].str.endswith("vs other raters (leave-one-out)") & (frame["statistic"] == "balanced_f1")]["value"]
    where = "below" if pooled < baseline.min() else "above" if pooled > baseline.max() else "inside"
    assert f"is {where} the experts' range ({baseline.min():.3f} to {baseline.max():.3f}" in _cell_text(section)
    # Top disagreements: at most 20, each a link to a card that exists (the judged run's, not the probe's).
    links = re.findall(r'<table class="crit trust-disagree">.*?</table>', section, re.S)[0]
    hrefs = re.findall(r'<a class="to-card" data-section="s0" href="#([^"]+)">([^<]+)</a>', links)
    assert 0 < len(hrefs) <= 20
    card_runs = {card_id: run for run, card_id in re.findall(r'<article class="card c(\d)" id="([^"]+)"', html)}
    card_samples = dict(re.findall(r'<article class="card[^"]*" id="([^"]+)".*?<h4>([^<]+)</h4>', html, re.S))
    judged_index = next(i for i, label in re.findall(r'<option value="(\d)">([^<]+)</option>', html) if label == "model (judge-a)")
    for card_id, sample in hrefs:
        assert card_samples.get(card_id) == sample, card_id
        assert card_runs[card_id] == judged_index
    # Every item shown really differs from the experts' majority, largest share first.
    shares = [int(x) for x in re.findall(r'<td class="n">(\d+)%</td>', links)]
    assert shares == sorted(shares, reverse=True) and shares[0] > 0
    # Markup in rater ids and criterion texts stays text.
    for payload in (IMG, SCRIPT):
        assert payload not in section
    assert "r3 &lt;img src=x onerror=" in section


def test_trust_section_prefers_stored_agreement_rows_for_the_same_options(tmp_path: Path) -> None:
    from rubric_judge import agree
    from rubric_judge.store.labels import import_labels

    db = trust_db(tmp_path / "data")
    stored = agree(db, resamples=200, seed=4)  # writes agreement_results
    con = duckdb.connect(str(db))
    try:  # a marker value only the stored rows carry: the report must show it, not recompute
        con.execute("""UPDATE agreement_results SET value = 0.123456, ci_low = 0.1, ci_high = 0.2
                       WHERE compared = 'judge vs raters (pooled pairs)' AND statistic = 'cohen_kappa'""")
    finally:
        con.close()
    out = tmp_path / "stored.html"
    build_report(db, out, resamples=200, seed=4)
    section = _cell_text(_trust_section(out.read_text(encoding="utf-8")))
    assert "from agreement_results" in section and "0.123 [0.100, 0.200]" in section
    # Other bootstrap options: computed with the report's own.
    build_report(db, out, resamples=200, seed=5)
    section = _cell_text(_trust_section(out.read_text(encoding="utf-8")))
    assert "computed for this report" in section and "0.123 [0.100, 0.200]" not in section
    # Labels imported after the rows were stored make them stale.
    (tmp_path / "more.jsonl").write_text('{"sample_id": "s00", "criterion_id": "scientific_accuracy-0", "rater_id": "r9", "label": true}\n')
    import_labels(db, tmp_path / "more.jsonl")
    build_report(db, out, resamples=200, seed=4)
    section = _cell_text(_trust_section(out.read_text(encoding="utf-8")))
    assert "computed for this report" in section and "judge vs rater r9" in section
    assert not stored.empty


def test_trust_section_is_absent_without_agreement_data(example_html: str) -> None:
    assert "-trust" not in example_html and "How far to trust" not in example_html
    assert 'class="panel trust"' not in example_html
