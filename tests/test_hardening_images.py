"""Hostile inputs that used to crash or pass silently: decompression-bomb images, duplicate ids in
an outputs JSONL file, an empty manifest. Each is an exit-2 error naming the file, before any run
is written, with no traceback.

The bombs are PNG headers declaring 30000 x 30000 pixels (900 million) followed by a few bytes
of pixel data: Pillow reads only the header on open, so a reader that checks the declared size
first never touches the rest, and one that does not fails (Pillow's own guard raises) or tries
to allocate gigabytes.
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import Result
from PIL import Image

from rubric_judge.errors import UserError
from rubric_judge.imageio import MAX_IMAGE_PIXELS_ENV, ImageTooLarge, open_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"
CLI = str(Path(sys.executable).with_name("rubric-judge"))
BOMB_SIDE = 30_000


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A 1-bit grayscale PNG declaring width x height pixels, with the first row of pixel data only."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    first_row = zlib.compress(b"\x00" * (1 + (width + 7) // 8))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", first_row) + _chunk(b"IEND", b"")


def small_png(width: int = 20, height: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of the IlluGenBench example (six tasks, outputs of two models)."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "example"))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _score(example: Path, tmp_path: Path, outputs: Path | None = None) -> subprocess.CompletedProcess[str]:
    return _cli("score", str(example / "tasks"), "--data", str(example / "manifest.jsonl"),
                "--outputs", str(outputs or example / "outputs" / "good-model"), "--model", "m", "--judge", "offline",
                "--db", str(tmp_path / "runs.duckdb"), "--cache-dir", str(tmp_path / "cache"))


def _unwrapped(text: str) -> str:
    """The CLI's output with the console's line wrapping undone (it breaks lines at spaces)."""
    return " ".join(text.split())


def _assert_refused(done: subprocess.CompletedProcess[str], tmp_path: Path, *needles: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in _unwrapped(done.stderr), done.stderr
    assert not (tmp_path / "runs.duckdb").exists(), "a run was written"


# --------------------------------------------------------------------------------------------
# Decompression bombs


def test_score_refuses_a_bomb_before_judging(example: Path, tmp_path: Path) -> None:
    (example / "outputs" / "good-model" / "lung-nodule.png").write_bytes(bomb_png())
    done = _score(example, tmp_path)
    _assert_refused(done, tmp_path, "lung-nodule.png", "900,000,000 pixels", f"{MAX_IMAGE_PIXELS_ENV}=900000000")


def test_plan_reports_a_bomb_as_it_reports_an_undecodable_image(example: Path) -> None:
    """Here the bomb is a reference image (ground truth), which the judge is sent too."""
    from typer.testing import CliRunner

    from rubric_judge.cli.app import app

    def plan() -> Result:
        return CliRunner().invoke(app, ["plan", str(example / "tasks"), "--data", str(example / "manifest.jsonl"),
                                        "--outputs", str(example / "outputs" / "good-model")])

    (example / "references" / "lung-nodule.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    undecodable = plan()
    (example / "references" / "lung-nodule.png").write_bytes(bomb_png())
    bomb = plan()
    assert type(bomb.exception) is type(undecodable.exception), bomb.exception  # the old code raised DecompressionBombError
    assert bomb.exit_code == undecodable.exit_code
    assert "lung-nodule.png is 30000x30000" in _unwrapped(bomb.output) and MAX_IMAGE_PIXELS_ENV in bomb.output


def test_the_pixel_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small.png"
    path.write_bytes(small_png(20, 20))
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "400")
    with open_image(path) as image:
        assert image.size == (20, 20)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "399")
    with pytest.raises(ImageTooLarge, match=f"small.png is 20x20 = 400 pixels, over the 399-pixel limit.*{MAX_IMAGE_PIXELS_ENV}=400"):
        open_image(path)
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV)
    with pytest.raises(ImageTooLarge, match="over the 268,435,456-pixel limit"):  # the default
        open_image(bomb_png(), "bomb")


@pytest.mark.parametrize("configured", ["lots", "0", "-5", "1e9"])
def test_a_bad_pixel_limit_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: str) -> None:
    path = tmp_path / "small.png"
    path.write_bytes(small_png())
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, configured)
    with pytest.raises(UserError, match=f"{MAX_IMAGE_PIXELS_ENV} must be a positive whole number of pixels, not '{configured}'"):
        open_image(path)


def test_metrics_give_a_bomb_an_error_status(tmp_path: Path) -> None:
    from rubric_judge.metrics.image import compute_image_metrics

    bomb, good = tmp_path / "bomb.png", tmp_path / "good.png"
    bomb.write_bytes(bomb_png())
    good.write_bytes(small_png())
    results = compute_image_metrics([("bad-output", bomb, good), ("bad-reference", good, bomb), ("fine", good, good)], ["ssim", "psnr"])
    for sample, role in (("bad-output", "output"), ("bad-reference", "reference")):
        for metric in ("ssim", "psnr"):
            value = results[(sample, metric)]
            assert value.status == "error" and value.value is None
            assert value.detail.startswith(f"{role} image: {bomb} is 30000x30000")
            assert f"{MAX_IMAGE_PIXELS_ENV}=900000000" in value.detail
    assert results[("fine", "psnr")].status == "ok"


def test_report_thumbnail_of_a_bomb_says_it_is_too_large(tmp_path: Path) -> None:
    from rubric_judge.report.images import make_thumbnails

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    thumbnail = make_thumbnails([bomb], workers=1).by_path[bomb]
    assert thumbnail.data_uri is None
    assert thumbnail.error == f"image too large (30000x30000 pixels, over the 268,435,456-pixel limit; see {MAX_IMAGE_PIXELS_ENV})"


def test_offline_judge_treats_a_bomb_as_undecodable() -> None:
    from rubric_judge.judge.offline import request_similarity

    similarity = request_similarity((bomb_png(), small_png()))
    assert (similarity.value, similarity.basis) == (0.5, "neutral similarity (an image could not be decoded)")


def test_every_image_is_opened_through_open_image() -> None:
    """The pixel limit holds only if no reader calls Image.open itself."""
    callers = []
    for path in sorted((ROOT / "rubric_judge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "open"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "Image"):
                callers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert [c.split(":")[0] for c in callers] == ["rubric_judge/imageio.py"], callers


# --------------------------------------------------------------------------------------------
# Outputs JSONL and manifest


def test_duplicate_ids_in_an_outputs_file_are_refused(example: Path, tmp_path: Path) -> None:
    outputs = example / "outputs.jsonl"
    outputs.write_text(
        '{"id": "lung-nodule", "generated_image": "outputs/good-model/lung-nodule.png"}\n'
        '{"id": "heart-chambers", "generated_image": "outputs/good-model/heart-chambers.png"}\n'
        '{"id": "lung-nodule", "generated_image": "outputs/weak-model/lung-nodule.png"}\n',
        encoding="utf-8",
    )
    done = _score(example, tmp_path, outputs=outputs)
    _assert_refused(done, tmp_path, f"{outputs}:3:1", "duplicate id 'lung-nodule' (first on line 1)")


def test_an_empty_manifest_is_refused(example: Path, tmp_path: Path) -> None:
    # A general rubric (task rubrics would complain that they match no sample): the old code
    # recorded an empty "finished" run and exited 0.
    manifest = example / "empty.jsonl"
    manifest.write_text("", encoding="utf-8")
    done = _cli("score", "builtin:medgen/holistic-without-gt.yaml", "--data", str(manifest), "--outputs", str(example / "outputs" / "good-model"),
                "--model", "m", "--judge", "offline", "--db", str(tmp_path / "runs.duckdb"), "--cache-dir", str(tmp_path / "cache"))
    _assert_refused(done, tmp_path, f"{manifest}: the manifest has no samples")


def test_a_manifest_of_blank_lines_is_empty(tmp_path: Path) -> None:
    from rubric_judge.planning.samples import load_samples

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(UserError, match="the manifest has no samples"):
        load_samples(manifest, None, {}, ())


def test_duplicates_are_reported_with_every_other_bad_line(tmp_path: Path) -> None:
    from rubric_judge.planning.samples import read_jsonl

    path = tmp_path / "manifest.jsonl"
    path.write_text('{"id": "a"}\n{"id": "a"}\nnot json\n{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(UserError) as caught:
        read_jsonl(path)
    assert [(p.location.line, p.message) for p in caught.value.problems] == [
        (2, "duplicate id 'a' (first on line 1)"),
        (3, "not valid JSON: Expecting value"),
        (4, "duplicate id 'a' (first on line 1)"),
    ]
