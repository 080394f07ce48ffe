"""Write docs/report.png: the example report as headless Chromium draws it.

    make screenshot          # = make demo, then this script on .demo/report.html

Two regions of the page, stacked: the top (overview, leaderboard with intervals, charts) and
one sample card with failed criteria (images side by side, verdicts, reasoning). The browser is
driven by tests/browser.py, the same DevTools-protocol client the browser tests use. The PNG is
reduced to a 256-colour palette, which keeps it small and changes nothing visible in a UI.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import open_page  # noqa: E402

WIDTH = 1400
GAP = 18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the report HTML (e.g. .demo/report.html)")
    parser.add_argument("out", type=Path, nargs="?", default=ROOT / "docs" / "report.png")
    args = parser.parse_args()

    from PIL import Image

    with open_page(args.report, width=WIDTH, height=1000) as page:
        if page.events.errors:
            raise SystemExit(f"the page logged errors: {page.events.errors}")
        # Cards off screen are skipped by `content-visibility: auto`; a capture beyond the
        # viewport needs them drawn.
        page.evaluate("document.querySelectorAll('.card').forEach(c => { c.style.contentVisibility = 'visible'; })")
        # Top: down to the end of the first rubric's charts.
        top_end = page.evaluate("document.querySelector('#s0 .two-col').getBoundingClientRect().bottom + window.scrollY + 12")
        # A card with failed criteria, preferably of the second-best model (the more instructive one).
        box = page.evaluate("""(() => {
            const cards = Array.from(document.querySelectorAll('#s0-cards article.card'));
            const card = cards.find(c => c.dataset.run === '1' && Number(c.dataset.fails) >= 2) || cards[0];
            const r = card.getBoundingClientRect();
            return [r.top + window.scrollY - 8, r.height + 16];
        })()""")
        parts = [_clip(page, 0, top_end), _clip(page, box[0], box[1])]
    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in parts]
    sheet = Image.new("RGB", (WIDTH, sum(i.height for i in images) + GAP * (len(images) - 1)), (214, 219, 228))
    y = 0
    for image in images:
        sheet.paste(image, (0, y))
        y += image.height + GAP
    sheet = sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height}, {args.out.stat().st_size / 1024:.0f} KB)")


def _clip(page, top: float, height: float) -> bytes:
    import base64

    clip = {"x": 0, "y": round(top), "width": WIDTH, "height": round(height), "scale": 1}
    return base64.b64decode(page.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})["data"])


if __name__ == "__main__":
    main()
