"""Build the tiny example datasets that rubric-judge's quick start scores.

Writes, next to this script:

* ``illugenbench/``: six IlluGenBench-style tasks (manifest, reference illustrations, one rubric
  file per task that extends ``builtin:illugenbench/base.yaml``) and the outputs of two pretend
  models, ``good-model`` (close renditions) and ``weak-model`` (poor renditions, one output
  deliberately missing).
* ``medgen/``: six MedGEN-Bench-style records (two each of VQA, ImageEdit and MMGeneration across
  CT, MRI, X-Ray, Pathology, Ultrasound and Clinical Photography) and a ``demo-model``'s outputs.

Every image is a small synthetic drawing made with Pillow shapes and text, not real patient
data. The script is deterministic: each image has a fixed seed (derived from its name with
CRC-32, never Python's salted ``hash``), and PNGs are written without timestamps or other
metadata, so re-running it reproduces byte-identical files (with the same Pillow and zlib).
Only Pillow and numpy are needed::

    python examples/make_examples.py
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
ILLU = HERE / "illugenbench"
MEDGEN = HERE / "medgen"
SIZE = 256
PAPER = (250, 248, 243)
INK = (40, 40, 48)

Color = tuple[int, int, int]
XY = tuple[float, float]

_FONTS: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if size not in _FONTS:
        _FONTS[size] = ImageFont.load_default(size=size)
    return _FONTS[size]


def rng_for(name: str) -> np.random.Generator:
    """A generator seeded from a stable checksum of `name`."""
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


def save_png(img: Image.Image, path: Path) -> None:
    """Write a PNG with no metadata chunks (no time, text or dpi), so bytes are reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = Image.frombytes(img.mode, img.size, img.tobytes())
    clean.save(path, format="PNG", optimize=True)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


# --------------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------------


def canvas(title: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (SIZE, SIZE), PAPER)
    d = ImageDraw.Draw(img)
    d.text((SIZE / 2, 8), title, fill=INK, font=font(13), anchor="mt")
    return img, d


def label(d: ImageDraw.ImageDraw, at: XY, text: str, to: XY | None = None, size: int = 10, anchor: str = "mm") -> None:
    """A text label, optionally with a thin leader line from the label to the point `to`."""
    if to is not None:
        d.line([at, to], fill=(90, 90, 96), width=1)
        d.ellipse([to[0] - 1.5, to[1] - 1.5, to[0] + 1.5, to[1] + 1.5], fill=(90, 90, 96))
        box = d.textbbox(at, text, font=font(size), anchor=anchor)
        d.rectangle([box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1], fill=PAPER)
    d.text(at, text, fill=INK, font=font(size), anchor=anchor)


def wavy(points: list[XY], amp: float, waves: float) -> list[XY]:
    """Resample a polyline and add a sideways sine wiggle (for convoluted tubules)."""
    out: list[XY] = []
    total = sum(math.dist(a, b) for a, b in itertools.pairwise(points))
    walked = 0.0
    for a, b in itertools.pairwise(points):
        seg = math.dist(a, b)
        nx, ny = -(b[1] - a[1]) / seg, (b[0] - a[0]) / seg
        steps = max(2, int(seg / 2))
        for i in range(steps):
            t = i / steps
            s = walked + t * seg
            w = amp * math.sin(2 * math.pi * waves * s / total)
            out.append((a[0] + (b[0] - a[0]) * t + nx * w, a[1] + (b[1] - a[1]) * t + ny * w))
        walked += seg
    out.append(points[-1])
    return out


def blob(cx: float, cy: float, r: float, rng: np.random.Generator, jag: float = 0.25, n: int = 28) -> list[XY]:
    """An irregular closed outline around (cx, cy)."""
    radii = r * (1 + jag * (rng.random(n) - 0.5) * 2)
    return [(cx + radii[i] * math.cos(2 * math.pi * i / n), cy + radii[i] * math.sin(2 * math.pi * i / n)) for i in range(n)]


def stray_marks(d: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    """Artefacts a weak model adds: random blots, scribbles and garbled pseudo-text."""
    for _ in range(3):
        x, y = rng.integers(20, SIZE - 20, size=2)
        r = int(rng.integers(4, 10))
        colour = tuple(int(v) for v in rng.integers(30, 220, size=3))
        d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    pts = [tuple(int(v) for v in rng.integers(20, SIZE - 20, size=2)) for _ in range(5)]
    d.line(pts, fill=(60, 60, 60), width=2)
    letters = "xqzrvkjwy"
    for _ in range(2):
        word = "".join(letters[int(i)] for i in rng.integers(0, len(letters), size=5))
        x, y = (int(v) for v in rng.integers(30, SIZE - 40, size=2))
        d.text((x, y), word.capitalize(), fill=(120, 30, 140), font=font(11))


# --------------------------------------------------------------------------------------------
# IlluGenBench reference drawings. `omit` names elements or labels to leave out, `wrong` draws
# the task's typical factual error, `rng` jitters shapes; the defaults give the reference.
# --------------------------------------------------------------------------------------------


def draw_heart(omit: frozenset[str] = frozenset(), wrong: bool = False) -> Image.Image:
    img, d = canvas("The heart: four chambers")
    # Anatomical convention: the patient's right is on the viewer's left.
    d.ellipse([52, 70, 206, 238], fill=(214, 120, 112), outline=(120, 40, 40), width=3)
    vessels_from = (96, 98) if wrong else (150, 100)
    # Aorta: ascending from the left ventricle, arching over the top.
    d.line([vessels_from, (146, 62)], fill=(176, 36, 40), width=18)
    d.arc([120, 34, 200, 94], start=200, end=360, fill=(176, 36, 40), width=16)
    d.line([(199, 64), (199, 92)], fill=(176, 36, 40), width=15)
    # Atria above, ventricles below; the left ventricle has the thicker wall.
    d.ellipse([64, 86, 126, 138], fill=(200, 92, 92), outline=(120, 40, 40), width=2)  # RA
    d.ellipse([134, 86, 194, 136], fill=(200, 92, 92), outline=(120, 40, 40), width=2)  # LA
    d.ellipse([70, 142, 128, 220], fill=(186, 70, 74), outline=(120, 40, 40), width=3)  # RV
    d.ellipse([128, 138, 196, 226], fill=(120, 30, 36), outline=(100, 24, 30), width=3)  # LV wall
    d.ellipse([142, 152, 182, 212], fill=(196, 84, 86))  # LV cavity
    d.line([(128, 140), (130, 224)], fill=(120, 40, 40), width=3)  # septum
    if "pulmonary" not in omit:  # pulmonary trunk, from the top of the right ventricle
        d.line([(114, 156), (110, 56)], fill=(66, 96, 184), width=14)
        d.line([(110, 60), (80, 46)], fill=(66, 96, 184), width=10)
    if "chamber_labels" not in omit:
        for text, at in (("RA", (95, 112)), ("LA", (164, 111)), ("RV", (99, 181)), ("LV", (162, 182))):
            d.text(at, text, fill=(255, 255, 255), font=font(13), anchor="mm")
    if "vessel_labels" not in omit:
        label(d, (224, 40), "Aorta", to=(196, 58), anchor="mm")
        label(d, (44, 30), "Pulmonary trunk", to=(96, 56), anchor="mm")
    return img


def draw_lung(omit: frozenset[str] = frozenset(), wrong: bool = False) -> Image.Image:
    img, d = canvas("Lung nodule, right upper lobe")
    rng = rng_for("lung-shape")
    right = [(118, 64), (96, 60), (70, 82), (52, 130), (44, 190), (58, 226), (100, 214), (118, 200)]
    left = [(138, 64), (160, 60), (186, 82), (204, 130), (212, 190), (198, 226), (156, 216), (150, 196), (140, 180)]
    for poly in (right, left):
        d.polygon(poly, fill=(238, 168, 170), outline=(150, 70, 80), width=2)
    d.rectangle([122, 30, 134, 92], fill=(214, 214, 220), outline=(110, 110, 120))  # trachea
    d.line([(128, 92), (98, 116)], fill=(180, 180, 190), width=8)
    d.line([(128, 92), (160, 118)], fill=(180, 180, 190), width=8)
    if "fissures" not in omit:
        d.line([(112, 104), (60, 214)], fill=(150, 70, 80), width=2)  # right oblique fissure
        d.line([(48, 142), (90, 150)], fill=(150, 70, 80), width=2)  # right horizontal fissure
        d.line([(144, 96), (202, 206)], fill=(150, 70, 80), width=2)  # left oblique fissure
    cx, cy = (176, 104) if wrong else (86, 100)
    d.polygon(blob(cx, cy, 11, rng, jag=0.45, n=20), fill=(92, 46, 60), outline=(60, 20, 30))
    if "labels" not in omit:
        label(d, (60, 36), "Nodule (RUL)", to=(cx - 4, cy - 8))
        label(d, (80, 240), "Right lung")
        label(d, (180, 240), "Left lung")
        label(d, (178, 40), "Trachea", to=(134, 48))
    return img


def draw_cell(omit: frozenset[str] = frozenset(), wrong: bool = False) -> Image.Image:
    img, d = canvas("Animal cell and organelles")
    d.ellipse([24, 34, 232, 236], fill=(252, 236, 196), outline=(176, 130, 60), width=4)
    d.ellipse([90, 94, 166, 170], fill=(178, 150, 210), outline=(90, 60, 130), width=3)  # nucleus
    d.ellipse([95, 99, 161, 165], outline=(120, 90, 160), width=1)  # double envelope
    if "nucleolus" not in omit:
        d.ellipse([122, 120, 142, 140], fill=(84, 50, 120))
    if "er" not in omit:
        for k in range(3):
            pts = wavy([(172 + 7 * k, 100), (176 + 7 * k, 166)], amp=3, waves=4)
            d.line(pts, fill=(70, 110, 170), width=2)
            for x, y in pts[::6]:
                d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(30, 50, 100))
    if "golgi" not in omit:
        for k in range(4):
            d.arc([60 + 2 * k, 178 + 6 * k, 112 - 2 * k, 206 + 6 * k], start=200, end=340, fill=(200, 110, 40), width=3)
    mitos = [(58, 104, 0.3), (190, 192, -0.5), (152, 206, 0.1)]
    if wrong:
        mitos[1] = (226, 238, -0.5)  # drawn outside the membrane
    for mx, my, tilt in mitos:
        w, h = 34, 16
        body = [(mx + w / 2 * math.cos(t) * math.cos(tilt) - h / 2 * math.sin(t) * math.sin(tilt),
                 my + w / 2 * math.cos(t) * math.sin(tilt) + h / 2 * math.sin(t) * math.cos(tilt))
                for t in np.linspace(0, 2 * math.pi, 32, endpoint=False)]
        d.polygon(body, fill=(240, 150, 80), outline=(160, 70, 20), width=2)
        if "cristae" not in omit:
            zig = [(mx + (i - 3) * 4 * math.cos(tilt) - (3 if i % 2 else -3) * math.sin(tilt),
                    my + (i - 3) * 4 * math.sin(tilt) + (3 if i % 2 else -3) * math.cos(tilt)) for i in range(7)]
            d.line(zig, fill=(160, 70, 20), width=1)
    if "labels" not in omit:
        label(d, (42, 70), "Mitochondrion", to=(56, 98))
        label(d, (128, 80), "Nucleus", to=(128, 96))
        label(d, (128, 152), "Nucleolus", size=9)
        label(d, (214, 84), "Rough ER", to=(186, 102))
        label(d, (46, 222), "Golgi", to=(70, 192))
        label(d, (212, 238), "Cell membrane", to=(206, 212))
    return img


def draw_dna(omit: frozenset[str] = frozenset(), wrong: bool = False) -> Image.Image:
    img, d = canvas("DNA double helix")
    top, bottom, cx, amp = 36, 236, 118, 46
    ys = np.linspace(top, bottom, 200)

    def phase(y: float) -> float:
        return 2 * math.pi * (y - top) / 100  # two full turns

    strand_a = [(cx + amp * math.sin(phase(y)), y) for y in ys]
    strand_b = [(cx + amp * math.sin(phase(y) + math.pi), y) for y in ys]
    pairs = ["AT", "GC", "TA", "CG", "AT", "GC", "GC", "TA", "AT", "CG", "TA", "GC", "AT", "CG", "GC", "AT"]
    if wrong:
        pairs = ["AG", "TC"] * 8
    base_colour = {"A": (64, 160, 80), "T": (214, 70, 60), "G": (60, 100, 200), "C": (232, 180, 40)}
    rung_ys = np.linspace(top + 6, bottom - 6, len(pairs))
    # Rungs behind, backbones on top.
    for y, pair in zip(rung_ys, pairs, strict=True):
        xa, xb = cx + amp * math.sin(phase(y)), cx + amp * math.sin(phase(y) + math.pi)
        mid = (xa + xb) / 2
        d.line([(xa, y), (mid, y)], fill=base_colour[pair[0]], width=5)
        d.line([(mid, y), (xb, y)], fill=base_colour[pair[1]], width=5)
    d.line(strand_a, fill=(40, 70, 140), width=5)
    d.line(strand_b, fill=(150, 60, 120), width=5)
    if "labels" not in omit:
        y1, y2 = rung_ys[1], rung_ys[4]
        label(d, (214, y1), "G-C", to=(cx + 8, y1))
        label(d, (214, y2), "A-T", to=(cx + 8, y2))
        label(d, (210, 200), "Sugar-phosphate", size=9)
        label(d, (210, 211), "backbone", to=(cx + amp * math.sin(phase(224)), 224), size=9)
        # Legend.
        for i, base in enumerate("ATGC"):
            d.rectangle([8, 60 + 16 * i, 18, 70 + 16 * i], fill=base_colour[base])
            d.text((22, 65 + 16 * i), {"A": "Adenine", "T": "Thymine", "G": "Guanine", "C": "Cytosine"}[base], fill=INK, font=font(9), anchor="lm")
    return img


def draw_appendectomy(omit: frozenset[str] = frozenset(), wrong: bool = False) -> Image.Image:
    img, d = canvas("Open appendectomy: incision")
    d.rectangle([0, 24, SIZE, SIZE], fill=(60, 130, 110))  # sterile drapes
    for k in range(0, SIZE, 12):  # drape weave
        d.line([(k, 24), (k, SIZE)], fill=(54, 120, 100), width=1)
    d.rounded_rectangle([40, 46, 216, 236], radius=18, fill=(232, 190, 160), outline=(40, 96, 80), width=3)
    umb = (128, 120)
    d.ellipse([umb[0] - 6, umb[1] - 5, umb[0] + 6, umb[1] + 5], fill=(200, 150, 120), outline=(150, 100, 80))
    asis = (176, 196) if wrong else (66, 196)  # anterior superior iliac spine
    d.ellipse([asis[0] - 4, asis[1] - 4, asis[0] + 4, asis[1] + 4], outline=(120, 80, 60), width=2)
    for t in np.linspace(0, 1, 12):  # dashed spino-umbilical line
        if int(t * 11) % 2 == 0:
            a = (umb[0] + (asis[0] - umb[0]) * t, umb[1] + (asis[1] - umb[1]) * t)
            b = (umb[0] + (asis[0] - umb[0]) * (t + 1 / 12), umb[1] + (asis[1] - umb[1]) * (t + 1 / 12))
            d.line([a, b], fill=(110, 90, 200), width=2)
    mc = (umb[0] + (asis[0] - umb[0]) * 2 / 3, umb[1] + (asis[1] - umb[1]) * 2 / 3)  # McBurney's point
    ux, uy = asis[0] - umb[0], asis[1] - umb[1]
    norm = math.hypot(ux, uy)
    px, py = -uy / norm, ux / norm  # perpendicular to the spino-umbilical line (gridiron incision)
    cut = [(mc[0] - 26 * px, mc[1] - 26 * py), (mc[0] + 26 * px, mc[1] + 26 * py)]
    d.line(cut, fill=(150, 20, 30), width=4)
    d.line(cut, fill=(220, 80, 80), width=1)
    for t in (0.2, 0.4, 0.6, 0.8):  # skin-marker ticks across the incision
        p = (cut[0][0] + (cut[1][0] - cut[0][0]) * t, cut[0][1] + (cut[1][1] - cut[0][1]) * t)
        d.line([(p[0] - 5 * ux / norm, p[1] - 5 * uy / norm), (p[0] + 5 * ux / norm, p[1] + 5 * uy / norm)], fill=(90, 20, 30), width=1)
    upper, lower = sorted(cut, key=lambda q: q[1])
    side = 1 if asis[0] < umb[0] else -1  # +1: incision on the image's left (patient's right)
    if "scalpel" not in omit:  # blade tip at the lower end of the incision, handle down and inwards
        tip = (lower[0] + 3 * side, lower[1] + 2)
        heel = (tip[0] + 26 * side, tip[1] + 8)
        d.polygon([tip, (heel[0], heel[1] - 5), (heel[0], heel[1] + 4)], fill=(206, 210, 220), outline=(90, 95, 110))
        d.line([heel, (heel[0] + 56 * side, heel[1] + 16)], fill=(120, 126, 142), width=7)
    if "labels" not in omit:
        label(d, (128, 104), "Umbilicus", size=9)
        label(d, (upper[0] + 4 * side, upper[1] - 30), "Incision", to=(upper[0] + 4 * px, upper[1] + 4 * py))
        label(d, (asis[0], 212), "ASIS", size=9)
        label(d, (mc[0] + 76 * side, mc[1] - 14), "McBurney's point", to=mc, size=9)
        d.ellipse([mc[0] - 2.5, mc[1] - 2.5, mc[0] + 2.5, mc[1] + 2.5], fill=(60, 40, 140))
        label(d, (216, 34), "Sterile drape", size=9)
        if "scalpel" not in omit:
            label(d, (heel[0] + 44 * side, heel[1] - 2), "Scalpel", size=10, anchor="mb")
    return img


def draw_nephron(omit: frozenset[str] = frozenset(), wrong: bool = False) -> Image.Image:
    img, d = canvas("The nephron")
    boundary = 120
    d.rectangle([0, 24, SIZE, boundary], fill=(246, 236, 222))
    d.rectangle([0, boundary, SIZE, SIZE], fill=(236, 226, 236))
    for x in range(0, SIZE, 8):
        d.line([(x, boundary), (x + 4, boundary)], fill=(120, 110, 130), width=1)
    d.text((250, boundary - 3), "Cortex", fill=(120, 100, 80), font=font(9), anchor="rb")
    d.text((250, boundary + 4), "Medulla", fill=(120, 100, 130), font=font(9), anchor="rt")
    loop_bottom = boundary - 20 if wrong else 222
    tube = (236, 196, 90)
    # Proximal convoluted tubule, descending limb, loop, ascending limb, distal convoluted tubule.
    pct = wavy([(74, 70), (98, 92), (84, 108)], amp=5, waves=5)
    d.line(pct, fill=tube, width=6)
    d.line([(84, 108), (96, loop_bottom - 10)], fill=tube, width=6)
    d.arc([94, loop_bottom - 24, 126, loop_bottom], start=0, end=180, fill=tube, width=6)
    d.line([(124, loop_bottom - 10), (124, 96)], fill=(214, 160, 70), width=6)
    dct = wavy([(124, 96), (150, 66), (176, 84)], amp=5, waves=4)
    d.line(dct, fill=(214, 160, 70), width=6)
    if "collecting_duct" not in omit:
        d.line([(176, 84), (196, 84)], fill=(214, 160, 70), width=6)
        d.line([(198, 40), (198, 240)], fill=(130, 150, 190), width=9)
    # Bowman's capsule around the glomerulus (a tuft of capillary loops).
    d.ellipse([42, 44, 80, 82], fill=(250, 246, 240), outline=(176, 120, 60), width=4)
    rng = rng_for("glomerulus")
    for _ in range(7):
        x, y = 61 + rng.normal(0, 5), 63 + rng.normal(0, 5)
        d.ellipse([x - 6, y - 6, x + 6, y + 6], outline=(196, 40, 50), width=2)
    d.line([(40, 38), (56, 54)], fill=(196, 40, 50), width=3)  # afferent arteriole
    if "labels" not in omit:
        label(d, (34, 100), "Glomerulus", to=(58, 66), size=9)
        label(d, (72, 36), "Bowman's capsule", to=(76, 52), size=9)
        label(d, (46, 150), "Proximal tubule", to=(92, 96), size=9)
        if "label_loop" not in omit:
            label(d, (62, 236), "Loop of Henle", to=(108, loop_bottom), size=9)
        label(d, (150, 44), "Distal tubule", to=(150, 66), size=9)
        if "collecting_duct" not in omit:
            label(d, (170, 170), "Collecting", size=9)
            label(d, (170, 181), "duct", to=(196, 181), size=9)
    return img


# --------------------------------------------------------------------------------------------
# IlluGenBench tasks
# --------------------------------------------------------------------------------------------

# (weight, dimension, text); ids are assigned per dimension in this order.
Criterion = tuple[int, str, str]
SA, SC, SEM = "scientific_accuracy", "structural_correctness", "semantic_alignment"

TASKS: list[dict] = [
    {
        "id": "heart-chambers",
        "category": "Anatomical",
        "prompt": "A clean frontal-view diagram of the human heart showing its four chambers (right and left atria, right and left ventricles) with the aorta and pulmonary trunk; label each chamber.",
        "draw": draw_heart,
        "weak": {"omit": {"chamber_labels", "pulmonary"}, "wrong": True},
        "criteria": [
            (5, SA, "The heart shows four chambers: two atria above two ventricles."),
            (-3, SA, "The aorta leaves the right ventricle."),
            (3, SC, "The left ventricle is drawn with a thicker muscular wall than the right ventricle."),
            (1, SC, "The chambers are labelled RA, LA, RV and LV."),
            (5, SEM, "The image is a frontal-view heart diagram with the aorta and pulmonary trunk leaving the top of the heart."),
        ],
    },
    {
        "id": "cell-organelles",
        "category": "Molecular & Cellular",
        "prompt": "An educational illustration of a single animal cell showing the nucleus with nucleolus, mitochondria, rough endoplasmic reticulum and Golgi apparatus inside the cell membrane, with labels.",
        "draw": draw_cell,
        "weak": {"omit": {"nucleolus", "cristae", "er"}, "wrong": True},
        "criteria": [
            (5, SA, "Mitochondria are drawn as oval organelles with folded inner membranes (cristae)."),
            (-3, SA, "An organelle is drawn outside the cell membrane."),
            (3, SC, "The nucleus is the largest organelle and contains a darker nucleolus."),
            (1, SC, "The rough ER lies next to the nucleus and is studded with ribosome dots."),
            (5, SEM, "The image shows a single animal cell with a labelled nucleus and labelled mitochondria."),
        ],
    },
    {
        "id": "dna-double-helix",
        "category": "Molecular & Cellular",
        "prompt": "A DNA double helix with two sugar-phosphate backbones and colour-coded base pairs, labelling an A-T and a G-C pair and the backbone, with a legend of the four bases.",
        "draw": draw_dna,
        "weak": None,  # the weak model produced no image for this task
        "criteria": [
            (5, SA, "The labelled base pairs pair adenine with thymine and guanine with cytosine."),
            (3, SA, "Two sugar-phosphate backbone strands twist around each other as a double helix."),
            (3, SC, "Base pairs are drawn as rungs joining the two strands at regular intervals."),
            (1, SC, "A legend names the four bases adenine, thymine, guanine and cytosine."),
            (5, SEM, "The image shows a DNA double helix with labelled base pairs and backbone."),
        ],
    },
    {
        "id": "appendectomy-incision",
        "category": "Surgical",
        "prompt": "Surgeon's-eye view of an open appendectomy field: the draped abdomen with an oblique incision over McBurney's point in the right lower quadrant and a scalpel at the incision; label the landmarks.",
        "draw": draw_appendectomy,
        "weak": {"omit": {"scalpel"}, "wrong": True},
        "criteria": [
            (5, SA, "The incision is in the patient's right lower quadrant (lower left of the image), between the umbilicus and the hip bone."),
            (-3, SA, "The incision is drawn on the patient's left side of the abdomen."),
            (3, SC, "Green sterile drapes frame the exposed skin of the operative field."),
            (1, SC, "A scalpel lies next to the incision with its blade towards the incision line."),
            (5, SEM, "The image shows an appendectomy operative field with a marked incision and a surgical instrument."),
        ],
    },
    {
        "id": "nephron-diagram",
        "category": "Educational",
        "prompt": "A labelled teaching diagram of one nephron across the renal cortex and medulla: glomerulus in Bowman's capsule, proximal tubule, loop of Henle, distal tubule and collecting duct.",
        "draw": draw_nephron,
        "weak": {"omit": {"collecting_duct", "label_loop"}, "wrong": True},
        "good_omit": {"label_loop"},  # the good model's one flaw: the loop of Henle is unlabelled
        "criteria": [
            (5, SA, "The loop of Henle dips below the cortex-medulla boundary into the medulla."),
            (3, SC, "The glomerulus sits inside Bowman's capsule at the start of the tubule."),
            (3, SC, "The tubule runs in order from Bowman's capsule through the proximal tubule, loop of Henle and distal tubule to the collecting duct."),
            (1, SC, "Every segment is labelled, including the loop of Henle."),
            (5, SEM, "The image is a clean, labelled teaching diagram of a single nephron."),
            (-3, SEM, "The image contains stray text artifacts or garbled labels."),
        ],
    },
    {
        "id": "lung-nodule",
        "category": "Disease Illustration",
        "prompt": "A frontal illustration of both lungs with the trachea and main bronchi, showing a spiculated nodule in the upper lobe of the right lung; label the nodule and each lung.",
        "draw": draw_lung,
        "weak": {"omit": {"fissures"}, "wrong": True},
        "criteria": [
            (5, SA, "The right lung (on the viewer's left) has three lobes and the left lung two."),
            (3, SA, "The nodule is an irregular, spiculated mass inside the lung tissue."),
            (3, SC, "The trachea divides into two main bronchi, one entering each lung."),
            (5, SEM, "A nodule in the upper lobe of the right lung is shown and labelled."),
            (-3, SEM, "The lesion is drawn in the left lung or outside the lungs."),
        ],
    },
]

WEAK_MISSING = "dna-double-helix"


def shift(img: Image.Image, dx: int, dy: int, fill: Color = PAPER) -> Image.Image:
    out = Image.new(img.mode, img.size, fill)
    out.paste(img, (dx, dy))
    return out


def add_noise(img: Image.Image, rng: np.random.Generator, sigma: float, block: int = 1) -> Image.Image:
    """Luminance noise; `block` > 1 makes it coarser (and keeps the PNGs small)."""
    arr = np.asarray(img, dtype=np.float32)
    h, w = arr.shape[:2]
    noise = rng.normal(0, sigma, size=(h // block + 1, w // block + 1)).round()
    noise = np.repeat(np.repeat(noise, block, axis=0), block, axis=1)[:h, :w]
    if arr.ndim == 3:
        noise = noise[:, :, None]
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8), img.mode)


def tint(img: Image.Image, gains: tuple[float, float, float], order: tuple[int, int, int] = (0, 1, 2)) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)[:, :, list(order)] * np.array(gains, dtype=np.float32)
    return Image.fromarray(np.clip(arr.round(), 0, 255).astype(np.uint8), "RGB")


def good_version(task: dict, index: int) -> Image.Image:
    img = task["draw"](omit=frozenset(task.get("good_omit", ())))
    rng = rng_for("good-model/" + task["id"])
    dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
    img = shift(img, dx, dy)
    img = tint(img, (1.0 + 0.03 * (index % 3 - 1), 0.97, 1.02))
    return add_noise(img, rng, sigma=3.0, block=2)


def weak_version(task: dict) -> Image.Image:
    spec = task["weak"]
    img = task["draw"](omit=frozenset(spec["omit"]), wrong=spec["wrong"])
    rng = rng_for("weak-model/" + task["id"])
    stray_marks(ImageDraw.Draw(img), rng)
    img = tint(img, (1.0, 0.9, 1.05), order=(2, 0, 1))  # wrong colours
    img = shift(img, 7, -5, fill=(150, 140, 150))
    img = img.filter(ImageFilter.GaussianBlur(2.2))
    return add_noise(img, rng, sigma=5.0, block=2)


def rubric_yaml(task: dict) -> str:
    lines = [
        f"# Task rubric for {task['id']}: criteria from the benchmark author; judged with the IlluGenBench base rubric.",
        "extends: builtin:illugenbench/base.yaml",
        f"task: {task['id']}",
        "criteria:",
    ]
    counters: dict[str, int] = {}
    for weight, dimension, text in task["criteria"]:
        counters[dimension] = counters.get(dimension, 0) + 1
        cid = f"{dimension}-{counters[dimension]}"
        lines.append(f"  - {{id: {cid}, dimension: {dimension}, weight: {weight}, text: {json.dumps(text)}}}")
    return "\n".join(lines) + "\n"


ILLU_README = """\
# IlluGenBench example

A tiny dataset in the IlluGenBench format for the rubric-judge quick start. Everything here is
synthetic: simple Pillow drawings, not real benchmark data.

- `manifest.jsonl`: six tasks across the five categories (Anatomical, Molecular & Cellular,
  Surgical, Educational, Disease Illustration): `id`, `category`, `prompt` and
  `reference_image` (a path relative to the manifest).
- `references/<id>.png`: the reference illustration for each task.
- `tasks/<id>.yaml`: one rubric per task; each `extends: builtin:illugenbench/base.yaml` and lists
  about five weighted criteria over `scientific_accuracy`, `structural_correctness` and
  `semantic_alignment` (weights 5, 3, 1; -3 marks something that must not appear).
- `outputs/good-model/<id>.png`: close renditions (small shifts, a slight colour change, mild
  noise); in `nephron-diagram` the loop of Henle is left unlabelled.
- `outputs/weak-model/<id>.png`: poor renditions (blurred, wrong colours, parts missing, factual
  errors, stray blots and garbled text).

**`outputs/weak-model/dna-double-helix.png` is missing on purpose**: the weak model produced no
image for that task, so the example shows how a missing output is reported and scored (the base
rubric's `missing_output: fail` counts it as a failed task).

Made by `python examples/make_examples.py`, which redraws every image deterministically (fixed
seeds, PNGs without metadata), so re-running it gives byte-identical files.
"""


def build_illugenbench() -> None:
    manifest = []
    for index, task in enumerate(TASKS):
        tid = task["id"]
        manifest.append({"id": tid, "category": task["category"], "prompt": task["prompt"], "reference_image": f"references/{tid}.png"})
        save_png(task["draw"](), ILLU / "references" / f"{tid}.png")
        save_png(good_version(task, index), ILLU / "outputs" / "good-model" / f"{tid}.png")
        weak_path = ILLU / "outputs" / "weak-model" / f"{tid}.png"
        if task["weak"] is None:
            weak_path.unlink(missing_ok=True)  # deliberately missing output
        else:
            save_png(weak_version(task), weak_path)
        write_text(ILLU / "tasks" / f"{tid}.yaml", rubric_yaml(task))
    write_jsonl(ILLU / "manifest.jsonl", manifest)
    write_text(ILLU / "README.md", ILLU_README)


# --------------------------------------------------------------------------------------------
# MedGEN-Bench synthetic scans
# --------------------------------------------------------------------------------------------


def finish_scan(img: Image.Image, name: str, sigma: float, blur: float = 0.8) -> Image.Image:
    img = img.filter(ImageFilter.GaussianBlur(blur))
    return add_noise(img, rng_for(name), sigma=sigma)


def ct_abdomen(lesion: bool = True) -> Image.Image:
    """Axial abdominal CT at the liver level (patient's right on the image's left)."""
    s = 192
    img = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(img)
    d.ellipse([14, 34, 178, 166], fill=72)  # subcutaneous fat
    d.ellipse([22, 42, 170, 158], fill=112)  # muscle / soft tissue
    d.ellipse([28, 50, 164, 150], fill=96)  # intra-abdominal fat
    d.chord([30, 52, 120, 150], start=90, end=290, fill=138)  # liver
    d.polygon([(75, 60), (104, 70), (92, 110), (60, 128)], fill=138)
    d.ellipse([112, 62, 150, 100], fill=118)  # stomach
    d.ellipse([118, 66, 144, 84], fill=8)  # gastric air
    d.ellipse([138, 100, 158, 132], fill=128)  # spleen
    d.ellipse([58, 116, 80, 140], fill=150)  # right kidney
    d.ellipse([114, 116, 136, 140], fill=150)  # left kidney
    d.ellipse([90, 108, 102, 120], fill=190)  # aorta (contrast)
    d.ellipse([80, 124, 112, 150], fill=230)  # vertebral body
    d.polygon([(90, 150), (102, 150), (96, 162)], fill=220)  # spinous process
    if lesion:
        d.ellipse([50, 80, 72, 102], fill=92)  # hypodense liver lesion
    return finish_scan(img, "ct-abdomen", sigma=6)


def xray_chest(effusion: bool = True) -> Image.Image:
    """PA chest radiograph; the patient's left is on the image's right."""
    s = 224
    img = Image.new("L", (s, s), 20)
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([18, 20, 206, 224], radius=40, fill=120)  # soft tissue
    d.ellipse([34, 40, 108, 196], fill=44)  # right lung
    d.ellipse([116, 40, 190, 196], fill=44)  # left lung
    d.rectangle([104, 20, 120, 120], fill=150)  # mediastinum / spine
    d.ellipse([92, 104, 168, 182], fill=176)  # cardiac silhouette, to the patient's left
    for k in range(7):  # posterior ribs
        y = 56 + 18 * k
        d.arc([30, y - 10, 116, y + 34], start=195, end=330, fill=146, width=3)
        d.arc([108, y - 10, 194, y + 34], start=210, end=345, fill=146, width=3)
    d.line([(40, 46), (104, 58)], fill=190, width=6)  # clavicles
    d.line([(184, 46), (120, 58)], fill=190, width=6)
    d.chord([34, 170, 108, 220], start=180, end=360, fill=128)  # right hemidiaphragm
    d.chord([116, 176, 190, 224], start=180, end=360, fill=128)  # left hemidiaphragm
    if effusion:
        d.polygon([(118, 196), (122, 160), (150, 168), (176, 150), (192, 146), (192, 200)], fill=150)
    d.text((28, 26), "R", fill=235, font=font(14))
    return finish_scan(img, "xray-chest", sigma=5, blur=1.2)


def mri_brain(lesion: bool = True) -> Image.Image:
    """Axial contrast-enhanced T1 brain MRI; the patient's right is on the image's left."""
    s = 192
    img = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(img)
    d.ellipse([26, 14, 166, 180], fill=200)  # scalp fat
    d.ellipse([32, 20, 160, 174], fill=30)  # skull (dark on T1)
    d.ellipse([38, 26, 154, 168], fill=104)  # cortex (grey matter)
    d.ellipse([50, 40, 142, 156], fill=136)  # white matter
    d.ellipse([76, 70, 94, 118], fill=28)  # lateral ventricles
    d.ellipse([98, 70, 116, 118], fill=28)
    d.line([(96, 28), (96, 166)], fill=60, width=2)  # interhemispheric fissure
    if lesion:
        d.ellipse([50, 44, 86, 80], fill=112)  # oedema
        d.ellipse([56, 50, 80, 74], fill=225)  # enhancing rim
        d.ellipse([62, 56, 74, 68], fill=70)  # necrotic core
    return finish_scan(img, "mri-brain", sigma=5)


def pathology_tile(stain: str = "he", degraded: bool = False) -> Image.Image:
    """A tissue tile; `he` = H&E, `ki67` = Ki-67 immunohistochemistry of the same nuclei."""
    s = 192
    rng = rng_for("pathology-nuclei")
    colours = {"he": ((236, 186, 206), (246, 220, 230)), "ki67": ((226, 226, 232), (240, 240, 244))}
    bg, lumen = colours[stain]
    img = Image.new("RGB", (s, s), bg)
    d = ImageDraw.Draw(img)
    for cx, cy, r in ((60, 70, 22), (150, 140, 26), (40, 160, 14)):  # lumina / stroma gaps
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=lumen)
    positive = set(range(0, 60, 3)) | {5, 11, 29}
    for i in range(60):
        x, y = rng.uniform(8, s - 8, size=2)
        rx, ry = rng.uniform(4, 7), rng.uniform(3, 5.5)
        if stain == "he":
            fill = (92, 52, 134)
        elif i in positive and not (degraded and i % 9 == 0):
            fill = (128, 78, 38)  # DAB-positive nucleus
        else:
            fill = (104, 118, 172)  # haematoxylin counterstain
        d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill)
    return finish_scan(img, f"pathology-{stain}", sigma=4, blur=0.7)


def ultrasound_gallbladder() -> Image.Image:
    """Gallbladder ultrasound in a sector image with speckle, a stone and its acoustic shadow."""
    s = 192
    rng = rng_for("ultrasound-speckle")
    speckle = np.clip(rng.rayleigh(34, size=(s, s)), 0, 255).astype(np.uint8)
    tissue = Image.fromarray(speckle, "L").filter(ImageFilter.GaussianBlur(0.9))
    d = ImageDraw.Draw(tissue)
    d.ellipse([54, 66, 146, 118], fill=6)  # anechoic gallbladder
    d.polygon([(96, 112), (122, 112), (132, 192), (88, 192)], fill=10)  # posterior acoustic shadow
    d.ellipse([98, 100, 118, 116], fill=235)  # echogenic stone (dependent)
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).pieslice([-84, 4, 276, 364], start=235, end=305, fill=255)
    img = Image.new("L", (s, s), 0)
    img.paste(tissue, (0, 0), mask)
    ImageDraw.Draw(img).text((6, 6), "GB", fill=200, font=font(10))
    return img.filter(ImageFilter.GaussianBlur(0.5))


def skin_lesion() -> Image.Image:
    """Clinical photograph of a pigmented skin lesion with a millimetre ruler."""
    s = 192
    rng = rng_for("skin-lesion")
    y = np.linspace(0, 1, s, dtype=np.float32)[:, None]
    base = np.stack([np.full((s, s), 214) - 16 * y, np.full((s, s), 168) - 14 * y, np.full((s, s), 140) - 12 * y], axis=2)
    base += rng.normal(0, 3, size=(s // 4, s // 4, 1)).repeat(4, 0).repeat(4, 1)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.polygon(blob(92, 82, 34, rng, jag=0.16, n=30), fill=(110, 70, 48))
    d.polygon(blob(100, 76, 16, rng, jag=0.4, n=18), fill=(62, 38, 30))  # darker area
    d.polygon(blob(78, 96, 9, rng, jag=0.4, n=14), fill=(150, 96, 80))  # lighter, reddish area
    d.rectangle([20, 150, 172, 176], fill=(240, 240, 232), outline=(120, 120, 120))
    for k in range(0, 31):
        x = 26 + 4.6 * k
        d.line([(x, 150), (x, 158 if k % 5 else 163)], fill=(40, 40, 40), width=1)
    d.text((26, 166), "0", fill=(40, 40, 40), font=font(8), anchor="lm")
    d.text((26 + 4.6 * 10, 166), "1 cm", fill=(40, 40, 40), font=font(8), anchor="lm")
    return finish_scan(img, "skin-photo", sigma=2, blur=0.6)


def outline(img: Image.Image, box: tuple[int, int, int, int], colour: Color, width: int = 2) -> Image.Image:
    out = img.convert("RGB")
    ImageDraw.Draw(out).ellipse(box, outline=colour, width=width)
    return out


def degrade(img: Image.Image, name: str, blur: float = 1.2, sigma: float = 6) -> Image.Image:
    """A model's imperfect version of a ground-truth image: softer and noisier."""
    return add_noise(img.filter(ImageFilter.GaussianBlur(blur)), rng_for("demo/" + name), sigma=sigma)


def lesion_contour(img: Image.Image, colour: Color, jitter: float, name: str) -> Image.Image:
    out = img.convert("RGB")
    pts = blob(92, 82, 40, rng_for(name), jag=jitter, n=30)
    ImageDraw.Draw(out).line(pts + pts[:1], fill=colour, width=2)
    return out


MEDGEN_README = """\
# MedGEN-Bench example

A tiny dataset in the MedGEN-Bench format for the rubric-judge quick start: two records for each
of the three formats (VQA, ImageEdit, MMGeneration) across six modalities (CT, MRI, X-Ray,
Pathology, Ultrasound, Clinical Photography). Every image is a synthetic Pillow drawing (a
stylised scan or photo with noise), not patient data.

- `manifest.jsonl`: `id`, `category`, `sub_category`, `paper_task`, `modality`, `instruction`,
  `input_image`, `ground_truth_image` (ImageEdit and MMGeneration) and `answer` (VQA and
  MMGeneration); image paths are relative to the manifest.
- `images/`: the input and ground-truth images.
- `outputs/demo-model/outputs.jsonl`: a pretend model's `response` text (VQA, MMGeneration) and
  `output_image` (ImageEdit, MMGeneration; paths relative to that file), with the images in
  `outputs/demo-model/images/`. The outputs are plausible but imperfect: softened, noisy images,
  one edit that leaves part of the lesion, one VQA answer that names the wrong side.

Made by `python examples/make_examples.py` (deterministic; re-running gives identical files).
"""


def build_medgen() -> None:
    out_dir = MEDGEN / "outputs" / "demo-model"
    images: dict[str, Image.Image] = {}
    records: list[dict] = []
    outputs: list[dict] = []

    def add(record: dict, input_img: Image.Image, gt: Image.Image | None, output: dict, out_img: Image.Image | None) -> None:
        rid = record["id"]
        record["input_image"] = f"images/{rid}-input.png"
        images[record["input_image"]] = input_img
        if gt is not None:
            record["ground_truth_image"] = f"images/{rid}-gt.png"
            images[record["ground_truth_image"]] = gt
        records.append(record)
        row = {"id": rid, **output}
        if out_img is not None:
            row["output_image"] = f"images/{rid}.png"
            save_png(out_img, out_dir / "images" / f"{rid}.png")
        outputs.append(row)

    # VQA
    add(
        {"id": "vqa-ct-liver-lesion", "category": "VQA", "sub_category": "Lesion detection", "paper_task": "Closed-ended diagnostic VQA", "modality": "CT",
         "instruction": "Is there a focal lesion in the liver on this axial contrast-enhanced CT slice? If so, where is it and how does it appear?",
         "answer": "Yes. There is a round, well-defined hypodense lesion in the right lobe of the liver."},
        ct_abdomen(), None,
        {"response": "Yes, a low-attenuation round lesion is seen in the right hepatic lobe."}, None,
    )
    add(
        {"id": "vqa-xray-effusion", "category": "VQA", "sub_category": "Finding localisation", "paper_task": "Open-ended diagnostic VQA", "modality": "X-Ray",
         "instruction": "What abnormality is visible on this PA chest radiograph, and on which side?",
         "answer": "A left-sided pleural effusion, with blunting of the left costophrenic angle and a meniscus sign."},
        xray_chest(), None,
        {"response": "There is a pleural effusion at the right lung base blunting the costophrenic angle."}, None,
    )
    # ImageEdit
    mri_gt = mri_brain(lesion=False)
    mri_out = mri_brain(lesion=False)
    ImageDraw.Draw(mri_out).ellipse([60, 54, 72, 66], fill=170)  # a faint remnant of the lesion
    add(
        {"id": "edit-mri-remove-lesion", "category": "ImageEdit", "sub_category": "Lesion removal", "paper_task": "Counterfactual healthy-tissue synthesis", "modality": "MRI",
         "instruction": "Remove the ring-enhancing lesion and surrounding oedema from the right frontal lobe and restore normal-appearing brain tissue; change nothing else."},
        mri_brain(lesion=True), mri_gt, {}, degrade(mri_out, "edit-mri", blur=1.0, sigma=5),
    )
    add(
        {"id": "edit-pathology-ki67", "category": "ImageEdit", "sub_category": "Stain translation", "paper_task": "Virtual immunohistochemistry staining", "modality": "Pathology",
         "instruction": "Translate this H&E-stained tile into a Ki-67 immunohistochemistry stain of the same tissue: proliferating nuclei brown, other nuclei blue."},
        pathology_tile("he"), pathology_tile("ki67"), {}, degrade(pathology_tile("ki67", degraded=True), "edit-pathology", blur=1.0, sigma=4),
    )
    # MMGeneration
    us = ultrasound_gallbladder()
    add(
        {"id": "mmgen-us-gallstone", "category": "MMGeneration", "sub_category": "Finding description and annotation", "paper_task": "Interleaved report and annotation generation", "modality": "Ultrasound",
         "instruction": "Describe the main finding in this gallbladder ultrasound and return the image with the finding circled.",
         "answer": "A mobile echogenic gallstone lies in the dependent part of the gallbladder, casting a posterior acoustic shadow (cholelithiasis)."},
        us, outline(us, (92, 94, 124, 122), (255, 220, 0)),
        {"response": "The gallbladder contains a bright echogenic focus with acoustic shadowing behind it, consistent with a gallstone."},
        degrade(outline(us, (88, 90, 126, 120), (255, 220, 0)), "mmgen-us", blur=0.8, sigma=5),
    )
    skin = skin_lesion()
    add(
        {"id": "mmgen-photo-melanoma", "category": "MMGeneration", "sub_category": "Lesion assessment and segmentation", "paper_task": "Report generation with lesion outlining", "modality": "Clinical Photography",
         "instruction": "Assess this pigmented skin lesion with the ABCDE criteria and return the photograph with the lesion border outlined.",
         "answer": "An asymmetric pigmented lesion about 15 mm across with irregular, notched borders and variegated dark-brown and reddish colour; suspicious for melanoma, so excision biopsy is advised."},
        skin, lesion_contour(skin, (0, 200, 120), 0.08, "contour-gt"),
        {"response": "The lesion is asymmetric with an irregular border and several shades of brown; it is suspicious and a biopsy should be considered."},
        degrade(lesion_contour(skin, (0, 200, 120), 0.22, "contour-demo"), "mmgen-photo", blur=1.0, sigma=4),
    )

    for rel, img in images.items():
        save_png(img, MEDGEN / rel)
    write_jsonl(MEDGEN / "manifest.jsonl", records)
    write_jsonl(out_dir / "outputs.jsonl", outputs)
    write_text(MEDGEN / "README.md", MEDGEN_README)


def main() -> None:
    build_illugenbench()
    build_medgen()


if __name__ == "__main__":
    main()
