"""The report in a real browser: headless Chromium (Debian's `chromium`) over the DevTools protocol.

These tests never skip: without chromium they fail and say to run `make test`, which installs it.
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pytest
from browser import open_page
from report_fixtures import IMG, SCRIPT, SVG, chromium_or_fail, example_db, trust_db, xss_db

from rubric_judge.report import build_report


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_or_fail()


@pytest.fixture(scope="module")
def example_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "report.html"
    build_report(example_db(), out)
    return out


def _visible(selector: str) -> str:
    return f"Array.from(document.querySelectorAll({selector!r})).filter(e => e.offsetParent !== null)"


def _choose(page, section: str, name: str, value: str) -> None:
    page.evaluate(f"""(() => {{
        const el = document.querySelector('.filters[data-section="{section}"] [data-filter="{name}"]');
        el.value = {value!r};
        el.dispatchEvent(new Event('change', {{bubbles: true}}));
    }})()""")


def test_example_report_renders_offline_without_errors(chromium: str, example_report: Path, tmp_path: Path) -> None:
    with open_page(example_report) as page:
        rows = page.evaluate("document.querySelectorAll('#leaderboard tbody tr').length")
        board = page.evaluate("document.querySelector('#leaderboard').innerText")
        charts = page.evaluate("document.querySelectorAll('svg.chart line.whisker').length")
        thumbs = page.evaluate("""Array.from(document.querySelectorAll('.thumb'))
                                   .filter(e => getComputedStyle(e).backgroundImage.startsWith('url("data:image/')).length""")
        layout_ok = page.evaluate("document.querySelector('#leaderboard').getBoundingClientRect().height > 100")
        shot = page.screenshot()
        events = page.events
    assert rows == 3
    for model in ("good-model", "weak-model", "demo-model"):
        assert model in board
    assert charts > 10  # interval whiskers drawn
    assert thumbs == page_thumbs(example_report) > 0  # every embedded thumbnail actually displays
    assert layout_ok
    assert events.errors == [], events.errors
    # Nothing requested beyond the file itself (data: URIs are the page's own embedded images).
    assert [u for u in events.requests if not u.startswith("data:")] == [example_report.resolve().as_uri()]
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000
    assert struct.unpack(">II", shot[16:24]) == (1400, 1000)
    (tmp_path / "report.png").write_bytes(shot)
    _assert_not_blank(shot)


def page_thumbs(path: Path) -> int:
    return path.read_text(encoding="utf-8").count('<div class="thumb ')


def _assert_not_blank(png: bytes) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    low, high = image.getextrema()
    assert high - low > 100 and len(image.getcolors(1 << 16) or range(1 << 16)) > 50


def test_filters_sort_and_card_links_work(chromium: str, example_report: Path) -> None:
    with open_page(example_report) as page:
        total_cards = page.evaluate(f"{_visible('#s0-cards article.card')}.length")
        assert total_cards == 12
        # Status "failed": only failed criteria remain, and only cards that have one.
        _choose(page, "s0", "status", "fail")
        outcomes = page.evaluate(f"{_visible('#s0-cards tr.v')}.map(r => r.dataset.outcome)")
        cards = page.evaluate(f"{_visible('#s0-cards article.card')}.map(c => Number(c.dataset.fails))")
        assert outcomes and set(outcomes) == {"fail"}
        assert cards and all(n > 0 for n in cards) and len(cards) < total_cards
        assert len(outcomes) == sum(cards)
        # Model and dimension on top.
        _choose(page, "s0", "run", "1")
        _choose(page, "s0", "dim", "scientific_accuracy")
        runs = page.evaluate(f"{_visible('#s0-cards article.card')}.map(c => c.dataset.run)")
        dims = page.evaluate(f"{_visible('#s0-cards tr.v')}.map(r => r.dataset.dim)")
        assert runs and set(runs) == {"1"} and set(dims) == {"scientific_accuracy"}
        shown = page.evaluate("document.querySelector('.filters[data-section=\"s0\"] .shown').textContent")
        assert shown.startswith(f"showing {len(runs)} of 12 sample cards")
        # Reset, then sort by score, lowest first.
        page.evaluate("document.querySelector('.filters[data-section=\"s0\"]').reset()")
        page.evaluate("new Promise(r => setTimeout(r, 50))")
        assert page.evaluate(f"{_visible('#s0-cards article.card')}.length") == 12
        _choose(page, "s0", "sort", "score-asc")
        scores = page.evaluate(f"{_visible('#s0-cards article.card')}.map(c => c.dataset.score === '' ? null : Number(c.dataset.score))")
        numbers = [s for s in scores if s is not None]
        assert numbers == sorted(numbers) and scores[: len(numbers)] == numbers
        # Search by text.
        page.evaluate("""(() => { const q = document.querySelector('.filters[data-section="s0"] [data-filter="q"]');
                                  q.value = 'nephron'; q.dispatchEvent(new Event('input', {bubbles: true})); })()""")
        page.evaluate("new Promise(r => setTimeout(r, 300))")
        samples = page.evaluate(f"{_visible('#s0-cards article.card')}.map(c => c.querySelector('h4').textContent)")
        assert samples and set(samples) == {"nephron-diagram"}
        # A link from the comparison to a card the filters hide clears the filters.
        hidden = page.evaluate("""(() => { const a = Array.from(document.querySelectorAll('#s0 a.to-card'))
                                               .find(a => document.getElementById(a.getAttribute('href').slice(1)).hidden);
                                           a.click(); return a.getAttribute('href').slice(1); })()""")
        assert page.evaluate(f"document.getElementById({hidden!r}).hidden") is False
        events = page.events
    assert events.errors == [], events.errors


def test_two_model_view_in_the_browser(chromium: str, example_report: Path) -> None:
    with open_page(example_report) as page:
        title = page.evaluate("document.querySelector('#s0-compare').textContent")
        paired = page.evaluate("document.querySelector('#s0-compare').nextElementSibling.nextElementSibling.querySelectorAll('tbody tr').length")
        forest = page.evaluate("document.querySelectorAll('#s0 svg.chart circle.point').length")
        differ = page.evaluate("document.querySelectorAll('#s0 table.disagree tbody tr').length")
        assert page.evaluate("document.querySelector('#s1-compare')") is None  # MedGEN has one run
        events = page.events
    assert "good-model (A) vs weak-model (B)" in title
    assert paired == 4 and forest == 4  # overall + three dimensions
    assert differ > 0
    assert events.errors == [], events.errors


def test_markup_in_the_data_stays_inert_in_the_browser(chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "xss.html"
    build_report(xss_db(tmp_path / "data"), out)
    with open_page(out) as page:
        pwned = page.evaluate("typeof window.__pwned")
        text = page.evaluate("document.body.innerText")
        elements = page.evaluate("""[document.querySelectorAll('img').length,
                                     Array.from(document.querySelectorAll('svg')).filter(s => !s.classList.contains('chart')).length,
                                     document.querySelectorAll('script').length]""")
        # Exercise the filters over the hostile values too.
        page.evaluate("""(() => { const el = document.querySelector('.filters [data-filter="category"]');
                                  el.value = el.options[1].value; el.dispatchEvent(new Event('change', {bubbles: true})); })()""")
        shown = page.evaluate(f"{_visible('article.card')}.length")
        pwned_after = page.evaluate("typeof window.__pwned")
        events = page.events
    assert pwned == pwned_after == "undefined"
    for payload in (SCRIPT, IMG, SVG):
        assert payload in text, payload
    assert elements == [0, 0, 2]
    assert shown == 2
    # No blocked attempt either: escaping, not only the Content-Security-Policy, kept the page clean.
    assert events.errors == [], events.errors
    assert [u for u in events.requests if not u.startswith("data:")] == [out.resolve().as_uri()]


def test_linked_images_load_from_their_files(chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "linked.html"
    build_report(example_db(), out, link_images=True)
    with open_page(out) as page:
        page.evaluate("document.querySelector('#s0-cards article.card').scrollIntoView()")
        page.evaluate("new Promise(r => setTimeout(r, 500))")
        loaded = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).map(i => i.src)")
        events = page.events
    assert len(loaded) >= 2 and all(src.startswith("file:///") and src.endswith(".png") for src in loaded)
    assert events.errors == [], events.errors
    # Only the page and image files it links: still nothing from the network.
    assert all(u.startswith("file:///") for u in events.requests if not u.startswith("data:"))


def test_trust_section_renders_and_links_to_cards_in_the_browser(chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "trust.html"
    build_report(trust_db(tmp_path / "data"), out, resamples=200)
    with open_page(out) as page:
        visible = page.evaluate("document.querySelector('#s0-trust').offsetParent !== null")
        height = page.evaluate("document.querySelector('#s0-trust').getBoundingClientRect().height")
        sentence = page.evaluate("document.querySelector('#s0-trust .placement').innerText")
        tables = page.evaluate("Array.from(document.querySelectorAll('#s0-trust table')).map(t => t.className)")
        toc = page.evaluate("Array.from(document.querySelectorAll('nav.toc a')).map(a => a.getAttribute('href'))")
        # Hide every card with the filters, then follow the first disagreement: the filters clear and the card shows.
        page.evaluate("""(() => { const q = document.querySelector('.filters[data-section="s0"] [data-filter="q"]');
                                  q.value = 'no sample has this text'; q.dispatchEvent(new Event('input', {bubbles: true})); })()""")
        page.evaluate("new Promise(r => setTimeout(r, 300))")
        target = page.evaluate("""(() => { const a = document.querySelector('#s0-trust table.trust-disagree a.to-card');
                                           const id = a.getAttribute('href').slice(1);
                                           const hidden = document.getElementById(id).hidden; a.click(); return [id, hidden]; })()""")
        shown = page.evaluate(f"document.getElementById({target[0]!r}).hidden")
        pwned = page.evaluate("typeof window.__pwned")
        events = page.events
    assert visible and height > 300
    assert re.search(r"is (inside|below|above) the experts' range", sentence)
    assert {"trust-judge", "trust-experts", "trust-alpha", "trust-consistency"} <= set(tables) and "crit trust-disagree" in tables
    assert "#s0-trust" in toc
    assert target[1] is True and shown is False
    assert pwned == "undefined"
    assert events.errors == [], events.errors
    assert [u for u in events.requests if not u.startswith("data:")] == [out.resolve().as_uri()]
