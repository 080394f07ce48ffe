"""Image metrics (SSIM, PSNR, LPIPS) against scikit-image and the lpips package, on generated
images; bad inputs; LPIPS weights absent. No downloads: LPIPS uses a random trunk saved to disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

ensure_torchvision_importable()

torch = pytest.importorskip("torch")
lpips = pytest.importorskip("lpips")
skimage_metrics = pytest.importorskip("skimage.metrics")
transforms = pytest.importorskip("torchvision.transforms")

from rubric_judge.metrics import image as image_metrics  # noqa: E402
from rubric_judge.metrics.device import resolve_device  # noqa: E402
from rubric_judge.metrics.image import ImageMetricOptions, compute_image_metrics, load_lpips_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALL = ("ssim", "psnr", "lpips")


# ------------------------------------------------------------------------------------------
# Generated images


def _scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth colour field with some texture: (H, W, 3) uint8."""
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)).astype(np.int16)
    return np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    base = _scene(rng, 96, 128)
    paths: dict[str, Path] = {}

    def save(name: str, array: np.ndarray, mode: str | None = None) -> None:
        paths[name] = root / f"{name}.png"
        (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(paths[name])

    save("gt", base)
    save("same", base.copy())
    save("noise", np.clip(base.astype(np.int16) + rng.integers(-30, 31, base.shape), 0, 255).astype(np.uint8))
    save("blur", np.asarray(Image.fromarray(base).resize((32, 24), Image.Resampling.BILINEAR).resize((128, 96), Image.Resampling.BILINEAR)))
    save("shift", np.roll(base, (3, 5), axis=(0, 1)))
    save("bigger", np.asarray(Image.fromarray(base).resize((200, 150), Image.Resampling.BICUBIC)))
    save("smaller", np.asarray(Image.fromarray(base).resize((64, 48), Image.Resampling.BICUBIC)))
    save("gray", np.asarray(Image.fromarray(base).convert("L")))
    rgba = np.concatenate([base, rng.integers(0, 256, base.shape[:2] + (1,), dtype=np.uint8)], axis=2)
    save("rgba", rgba)
    sixteen = (base[..., 1].astype(np.uint16) * 257) ^ rng.integers(0, 256, base.shape[:2]).astype(np.uint16)
    save("gt16", sixteen)  # mode I;16, most values > 255
    save("gt16_low", (base[..., 0] // 2).astype(np.uint16))  # 16-bit file, values all <= 255
    save("tiny", base[:5, :5].copy())
    save("tiny_gt", np.ascontiguousarray(base[10:15, 10:15]))
    paths["corrupt"] = root / "corrupt.png"
    paths["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    paths["empty"] = root / "empty.png"
    paths["empty"].write_bytes(b"")
    paths["text"] = root / "text.png"
    paths["text"].write_text("hello")
    return paths


# ------------------------------------------------------------------------------------------
# The reference: MedGEN-Bench's FR_IQA, one pair at a time (util/metrics.py, images opened with
# Image.open(p).convert("RGB") as its eval.py does).


def _reference_images(output: Path, reference: Path) -> tuple[Image.Image, Image.Image]:
    out = Image.open(output).convert("RGB")
    ref = Image.open(reference).convert("RGB")
    if out.size != ref.size:
        out = out.resize(ref.size, Image.Resampling.LANCZOS)
    return out, ref


def reference_ssim(output: Path, reference: Path) -> float:
    out, ref = _reference_images(output, reference)
    return float(skimage_metrics.structural_similarity(np.asarray(ref.convert("L")), np.asarray(out.convert("L")), data_range=255))


def reference_psnr(output: Path, reference: Path) -> float:
    out, ref = _reference_images(output, reference)
    if np.array_equal(np.asarray(ref), np.asarray(out)):
        return 100.0  # the reference's value for identical images (scikit-image: inf)
    return float(skimage_metrics.peak_signal_noise_ratio(np.asarray(ref), np.asarray(out), data_range=255))


def reference_lpips(model, output: Path, reference: Path, normalize: bool = False) -> float:
    out, ref = _reference_images(output, reference)
    preprocess = transforms.Compose([transforms.Resize((256, 256)), transforms.ToTensor()])
    with torch.inference_mode():
        return float(model(preprocess(out).unsqueeze(0), preprocess(ref).unsqueeze(0), normalize=normalize).item())


@pytest.fixture(scope="module")
def lpips_reference(tmp_path_factory: pytest.TempPathFactory):
    """`lpips.LPIPS(net='alex', pnet_rand=True)` (random trunk, no download) and its full state on disk."""
    torch.manual_seed(1234)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation notices
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    path = tmp_path_factory.mktemp("weights") / "lpips_alex_random.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _values(results, metric: str, ids: list[str]) -> list[float]:
    values = []
    for sample_id in ids:
        value = results[(sample_id, metric)]
        assert value.status == "ok", (sample_id, metric, value)
        values.append(value.value)
    return values


PAIRS_OK = ["same", "noise", "blur", "shift", "bigger", "smaller", "gray", "rgba"]


# ------------------------------------------------------------------------------------------
# torch guard and device


def test_torch_guard_applies_here_and_is_idempotent() -> None:
    code = textwrap.dedent(
        """
        import sys
        from rubric_judge.metrics import torch_guard
        torch_guard.ensure_torchvision_importable()
        torch_guard.ensure_torchvision_importable()
        import torch, torchvision, lpips
        assert "torchvision" in sys.modules
        cpu_torch = torch.version.cuda is None
        print(torch_guard.guard_applied(), cpu_torch, torchvision.__version__)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    applied, cpu_torch, version = done.stdout.split()
    if cpu_torch == "True" and "+cu" in version:
        assert applied == "True"  # this machine's exact mismatch: CPU torch, CUDA torchvision


def test_torch_guard_leaves_gpu_torch_alone() -> None:
    code = textwrap.dedent(
        """
        import torch
        torch.version.cuda = "13.0"  # pretend torch has CUDA: not the mismatch
        from rubric_judge.metrics import torch_guard
        torch_guard.ensure_torchvision_importable()
        print(torch_guard.guard_applied())
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_resolve_device() -> None:
    assert resolve_device("auto") in {"cpu", "cuda", "mps"}
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="available"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="cpu"):
            resolve_device("cuda:3")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


# ------------------------------------------------------------------------------------------
# SSIM and PSNR against scikit-image


def test_medgen_ssim_psnr_match_scikit_image(images: dict[str, Path]) -> None:
    pairs = [(name, images[name], images["gt"]) for name in PAIRS_OK]
    results = compute_image_metrics(pairs, ["ssim", "psnr"])
    for name in PAIRS_OK:
        ssim = results[(name, "ssim")]
        assert ssim.status == "ok"
        assert ssim.value == pytest.approx(reference_ssim(images[name], images["gt"]), abs=1e-6)
        psnr = results[(name, "psnr")]
        assert psnr.status == "ok"
        assert psnr.value == pytest.approx(reference_psnr(images[name], images["gt"]), abs=1e-6)
    assert results[("same", "psnr")].value == 100.0  # identical images: the reference's 100 dB, not inf
    assert results[("rgba", "psnr")].value == 100.0  # convert("RGB") drops alpha, as in the reference
    assert results[("same", "ssim")].value == pytest.approx(1.0)
    assert "resized from 200x150 to 128x96" in results[("bigger", "ssim")].detail
    assert results[("noise", "ssim")].value < results[("same", "ssim")].value


def test_fast_ssim_matches_scikit_image_on_odd_sizes() -> None:
    rng = np.random.default_rng(3)
    for height, width in [(7, 7), (9, 31), (250, 7), (301, 257)]:
        x = rng.integers(0, 256, (height, width), dtype=np.uint8)
        y = np.clip(x.astype(int) + rng.integers(-60, 61, x.shape), 0, 255).astype(np.uint8)
        expected = skimage_metrics.structural_similarity(x, y, data_range=255)
        assert image_metrics.ssim_uniform(x, y) == pytest.approx(expected, abs=1e-9)
        if min(height, width) >= 11:
            xr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            yr = np.clip(xr.astype(int) + rng.integers(-60, 61, xr.shape), 0, 255).astype(np.uint8)
            expected = skimage_metrics.structural_similarity(
                xr, yr, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
            assert image_metrics.ssim_gaussian(xr, yr) == pytest.approx(expected, abs=1e-9)
    constant = np.full((20, 20), 17, dtype=np.uint8)
    assert image_metrics.ssim_uniform(constant, constant) == pytest.approx(1.0)


def test_standard_preset_matches_scikit_image(images: dict[str, Path]) -> None:
    names = ["noise", "blur", "shift", "rgba"]
    results = compute_image_metrics([(n, images[n], images["gt"]) for n in names], ["ssim", "psnr"], ImageMetricOptions(preset="standard"))
    for name in names:
        out, ref = _reference_images(images[name], images["gt"])
        expected = skimage_metrics.structural_similarity(
            np.asarray(ref), np.asarray(out), data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert results[(name, "ssim")].value == pytest.approx(expected, abs=1e-6)
        assert results[(name, "psnr")].value == pytest.approx(reference_psnr(images[name], images["gt"]), abs=1e-6)


def test_sixteen_bit_input(images: dict[str, Path]) -> None:
    pairs = [("clip", images["gt16"], images["gt"]), ("low", images["gt16_low"], images["gt"])]
    results = compute_image_metrics(pairs, ["ssim", "psnr"])
    for sample_id, name in (("clip", "gt16"), ("low", "gt16_low")):
        # medgen: PIL convert("RGB"), as the reference opens images (I;16 values above 255 saturate).
        assert results[(sample_id, "ssim")].value == pytest.approx(reference_ssim(images[name], images["gt"]), abs=1e-6)
        assert results[(sample_id, "psnr")].value == pytest.approx(reference_psnr(images[name], images["gt"]), abs=1e-6)
    assert "saturated" in results[("clip", "ssim")].detail
    assert "saturated" not in results[("low", "ssim")].detail

    scaled = compute_image_metrics([("s", images["gt16"], images["gt"])], ["psnr"], ImageMetricOptions(high_bit_depth="scale"))
    high_byte = (np.asarray(Image.open(images["gt16"])).astype(np.uint16) >> 8).astype(np.uint8)
    expected = skimage_metrics.peak_signal_noise_ratio(
        np.asarray(Image.open(images["gt"]).convert("RGB")), np.stack([high_byte] * 3, axis=-1), data_range=255
    )
    assert scaled[("s", "psnr")].value == pytest.approx(expected, abs=1e-6)
    assert "high byte" in scaled[("s", "psnr")].detail


# ------------------------------------------------------------------------------------------
# LPIPS against the lpips package with identical weights


def test_lpips_matches_lpips_package(images: dict[str, Path], lpips_reference) -> None:
    model, weights = lpips_reference
    pairs = [(name, images[name], images["gt"]) for name in PAIRS_OK]
    unit = compute_image_metrics(pairs, ALL, ImageMetricOptions(lpips_weights=weights), device="cpu")
    signed = compute_image_metrics(pairs, ["lpips"], ImageMetricOptions(lpips_weights=weights, lpips_input="signed"), device="cpu")
    for name in PAIRS_OK:
        assert unit[(name, "lpips")].value == pytest.approx(reference_lpips(model, images[name], images["gt"]), abs=1e-5)
        assert signed[(name, "lpips")].value == pytest.approx(reference_lpips(model, images[name], images["gt"], normalize=True), abs=1e-5)
    assert unit[("same", "lpips")].value == pytest.approx(0.0, abs=1e-6)


def test_lpips_batching_and_native_size_agree(images: dict[str, Path], lpips_reference) -> None:
    model, weights = lpips_reference
    names = ["noise", "blur", "shift", "bigger"]
    pairs = [(n, images[n], images["gt"]) for n in names]
    one = compute_image_metrics(pairs, ["lpips"], ImageMetricOptions(lpips_weights=weights, lpips_batch_size=1), device="cpu")
    many = compute_image_metrics(pairs, ["lpips"], ImageMetricOptions(lpips_weights=weights, lpips_batch_size=3), device="cpu")
    native = compute_image_metrics(
        pairs, ["lpips"], ImageMetricOptions(preset="standard", lpips_weights=weights, lpips_size=None), device="cpu"
    )
    to_tensor = transforms.ToTensor()
    for name in names:
        assert one[(name, "lpips")].value == pytest.approx(many[(name, "lpips")].value, abs=1e-5)
        out, ref = _reference_images(images[name], images["gt"])
        with torch.inference_mode():
            expected = model(to_tensor(out).unsqueeze(0), to_tensor(ref).unsqueeze(0), normalize=True).item()
        assert native[(name, "lpips")].value == pytest.approx(expected, abs=1e-5)


def test_lpips_trunk_only_weights_file(images: dict[str, Path], lpips_reference, tmp_path: Path) -> None:
    """A torchvision-style trunk file (`features.N.*`, like alexnet-owt-7be5be79.pth) plus the
    lpips package's own linear layers."""
    model, _ = lpips_reference
    trunk = {f"features.{name.split('.', 1)[1]}": tensor for name, tensor in model.net.state_dict().items()}
    path = tmp_path / "alexnet-trunk.pth"
    torch.save(trunk, path)
    results = compute_image_metrics(
        [("noise", images["noise"], images["gt"])], ["lpips"], ImageMetricOptions(lpips_weights=path), device="cpu"
    )
    assert results[("noise", "lpips")].value == pytest.approx(reference_lpips(model, images["noise"], images["gt"]), abs=1e-5)
    assert load_lpips_model("alex", path, "cpu") is load_lpips_model("alex", path, "cpu")  # loaded once


def test_alex_lpips_needs_neither_torchvision_nor_the_lpips_import(images: dict[str, Path], lpips_reference, tmp_path: Path) -> None:
    """The AlexNet LPIPS model is built from torch.nn alone (importing lpips imports torchvision's
    model zoo and torch._dynamo: seconds per process), with the same modules and values."""
    model, full_state = lpips_reference
    trunk = {f"features.{name.split('.', 1)[1]}": tensor for name, tensor in model.net.state_dict().items()}
    trunk_path = tmp_path / "alexnet-trunk.pth"
    torch.save(trunk, trunk_path)
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from rubric_judge.metrics.image import ImageMetricOptions, compute_image_metrics\n"
        f"pairs = [('noise', Path({str(images['noise'])!r}), Path({str(images['gt'])!r}))]\n"
        "values = [compute_image_metrics(pairs, ['lpips'], ImageMetricOptions(lpips_weights=Path(p)), device='cpu')[('noise', 'lpips')].value\n"
        f"          for p in ({str(trunk_path)!r}, {str(full_state)!r})]\n"
        "print(json.dumps({'values': values, 'imported': sorted(m for m in ('torchvision', 'lpips') if m in sys.modules)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["imported"] == []
    expected = reference_lpips(model, images["noise"], images["gt"])
    assert result["values"] == pytest.approx([expected, expected], abs=1e-5)


def test_lpips_unavailable_without_trunk_weights(images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_home = tmp_path / "torch_home"
    empty_home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(empty_home))
    pairs = [("noise", images["noise"], images["gt"]), ("missing", None, images["gt"])]
    started = time.monotonic()
    results = compute_image_metrics(pairs, ALL, device="cpu")
    assert time.monotonic() - started < 10  # no download attempt, no hang
    lpips_value = results[("noise", "lpips")]
    assert lpips_value.status == "unavailable" and lpips_value.value is None
    expected_path = empty_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert str(expected_path) in lpips_value.detail
    assert "TORCH_HOME" in lpips_value.detail
    assert not any(empty_home.rglob("*.pth"))
    assert results[("noise", "ssim")].status == "ok"
    assert results[("noise", "psnr")].status == "ok"
    assert results[("missing", "lpips")].status == "missing_output"

    explicit = compute_image_metrics(pairs[:1], ["lpips"], ImageMetricOptions(lpips_weights=tmp_path / "nope.pth"))
    assert explicit[("noise", "lpips")].status == "unavailable"
    assert "nope.pth" in explicit[("noise", "lpips")].detail


# ------------------------------------------------------------------------------------------
# Bad inputs: per-sample statuses, never a number


def test_bad_inputs_get_statuses(images: dict[str, Path], tmp_path: Path) -> None:
    pairs = [
        ("none", None, images["gt"]),
        ("absent", tmp_path / "absent.png", images["gt"]),
        ("corrupt", images["corrupt"], images["gt"]),
        ("empty", images["empty"], images["gt"]),
        ("text", images["text"], images["gt"]),
        ("no_reference", images["noise"], tmp_path / "no_gt.png"),
        ("bad_reference", images["noise"], images["corrupt"]),
        ("tiny", images["tiny"], images["tiny_gt"]),
        ("good", images["noise"], images["gt"]),
    ]
    results = compute_image_metrics(pairs, ["ssim", "psnr"])
    for metric in ("ssim", "psnr"):
        assert results[("none", metric)].status == "missing_output"
        assert results[("absent", metric)].status == "missing_output"
        assert "absent.png" in results[("absent", metric)].detail
        for sample_id in ("corrupt", "empty", "text"):  # the model's broken image: a missing output, as an absent one
            value = results[(sample_id, metric)]
            assert value.status == "missing_output" and value.value is None, (sample_id, value)
        for sample_id in ("no_reference", "bad_reference"):
            value = results[(sample_id, metric)]
            assert value.status == "error" and value.value is None, (sample_id, value)
        assert "empty file" in results[("empty", metric)].detail
        assert "cannot decode output" in results[("corrupt", metric)].detail
        assert "reference image missing" in results[("no_reference", metric)].detail
        assert results[("good", metric)].status == "ok"
    assert results[("tiny", "ssim")].status == "error" and "smaller than the 7x7" in results[("tiny", "ssim")].detail
    assert results[("tiny", "psnr")].status == "ok"


def test_size_mismatch_without_resize_is_an_error(images: dict[str, Path]) -> None:
    options = ImageMetricOptions(resize_output=False)
    results = compute_image_metrics(
        [("bigger", images["bigger"], images["gt"]), ("noise", images["noise"], images["gt"])], ["ssim", "psnr"], options
    )
    assert results[("bigger", "ssim")].status == "error"
    assert "200x150" in results[("bigger", "ssim")].detail and "128x96" in results[("bigger", "ssim")].detail
    assert results[("noise", "ssim")].status == "ok"


def test_argument_checks(images: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown image metrics"):
        compute_image_metrics([("a", images["noise"], images["gt"])], ["fid"])
    with pytest.raises(ValueError, match="duplicate"):
        compute_image_metrics([("a", images["noise"], images["gt"]), ("a", images["blur"], images["gt"])], ["psnr"])
    with pytest.raises(ValueError):
        ImageMetricOptions(lpips_size=3)
    assert compute_image_metrics([], ["ssim"]) == {}
