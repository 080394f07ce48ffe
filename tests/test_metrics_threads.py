"""torch threads for CPU metrics on a busy machine: no more threads than idle cores, the LPIPS
forwards overlapping the next chunk's decoding, and the same values as on an idle machine."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

ensure_torchvision_importable()
torch = pytest.importorskip("torch")
lpips = pytest.importorskip("lpips")

from rubric_judge.metrics import device as device_module  # noqa: E402
from rubric_judge.metrics import image as image_module  # noqa: E402
from rubric_judge.metrics.device import cpu_torch_threads  # noqa: E402
from rubric_judge.metrics.image import ImageMetricOptions, compute_image_metrics  # noqa: E402


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.fixture
def busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every core kept busy by other processes; torch starts with 2 threads; no OMP_NUM_THREADS."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device_module, "_busy_elsewhere", lambda cpus: float(len(cpus) + 1))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_busy_cpu_gets_one_thread_and_it_is_restored(busy: None) -> None:
    with cpu_torch_threads("cpu") as threads:
        assert threads == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_explicit_omp_threads_and_gpu_are_left_alone(busy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with cpu_torch_threads("cuda") as threads:
        assert threads == torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with cpu_torch_threads("cpu") as threads:
        assert threads == torch.get_num_threads() == 2


def test_idle_cores_subtracts_what_others_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "_affinity", lambda: set(range(8)))
    monkeypatch.setattr(device_module, "_busy_elsewhere", lambda cpus: 2.6)
    assert device_module._idle_cores() == 5
    monkeypatch.setattr(device_module, "_busy_elsewhere", lambda cpus: 30.0)
    assert device_module._idle_cores() == 1


def test_what_others_use_is_the_cores_busy_time_less_this_process_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the sample, the cores were busy 0.18 s and this process used 0.08 s of it (its own
    threads, e.g. a model loading meanwhile): others used 1 core. The load average is not read."""
    busy, own, clock = iter([100.0, 100.18]), iter([5.0, 5.08]), iter([10.0, 10.1])
    monkeypatch.setattr(device_module, "_busy_seconds", lambda cpus: next(busy))
    monkeypatch.setattr(device_module.time, "process_time", lambda: next(own))
    monkeypatch.setattr(device_module.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(device_module.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(device_module.os, "getloadavg", lambda: pytest.fail("the load average was read"))
    assert device_module._busy_elsewhere({0, 1}) == pytest.approx(1.0)


def test_without_proc_stat_the_load_average_stands_in(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc_stat(cpus):
        raise FileNotFoundError("/proc/stat")

    monkeypatch.setattr(device_module, "_busy_seconds", no_proc_stat)
    monkeypatch.setattr(device_module.os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert device_module._busy_elsewhere({0, 1}) == 1.5


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="Linux only")
def test_busy_seconds_reads_the_cores_it_is_given() -> None:
    cpus = device_module._affinity()
    first = device_module._busy_seconds(cpus)
    assert 0 < first <= device_module._busy_seconds(cpus)
    assert device_module._busy_seconds(set()) == 0


@pytest.fixture(scope="module")
def pairs_and_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, Path, Path]], Path]:
    root = tmp_path_factory.mktemp("threads")
    rng = np.random.default_rng(3)
    pairs = []
    for i in range(5):
        size = (96, 80) if i % 2 else (64, 64)
        base = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        noisy = np.clip(base.astype(np.int16) + rng.integers(-25, 26, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(base).save(root / f"gt{i}.png")
        Image.fromarray(noisy).resize((size[0] + 7 * i, size[1]), Image.Resampling.BILINEAR).save(root / f"out{i}.png")
        pairs.append((f"p{i}", root / f"out{i}.png", root / f"gt{i}.png"))
    torch.manual_seed(5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    weights = root / "lpips.pth"
    torch.save(model.state_dict(), weights)
    return pairs, weights


def test_busy_machine_pipelines_lpips_with_one_thread_and_same_values(
    pairs_and_weights, busy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs, weights = pairs_and_weights
    options = ImageMetricOptions(lpips_weights=weights)
    monkeypatch.setattr(device_module, "_idle_cores", lambda: _cores())
    idle = compute_image_metrics(pairs, ("ssim", "psnr", "lpips"), options, device="cpu")

    seen: list[tuple[int, str]] = []
    forward = image_module._lpips_for_chunk

    def recording(*args, **kwargs):
        import threading

        seen.append((torch.get_num_threads(), threading.current_thread().name))
        return forward(*args, **kwargs)

    monkeypatch.setattr(image_module, "_lpips_for_chunk", recording)
    monkeypatch.setattr(image_module, "_CHUNK_PAIRS", 2)  # 3 chunks: decoding runs ahead of LPIPS
    monkeypatch.setattr(device_module, "_idle_cores", lambda: 1)
    busy_values = compute_image_metrics(pairs, ("ssim", "psnr", "lpips"), options, device="cpu")

    assert len(seen) == 3 and all(threads == 1 for threads, _ in seen)
    assert torch.get_num_threads() == 2  # restored
    assert busy_values.keys() == idle.keys()
    for key, value in idle.items():
        assert value.status == busy_values[key].status == "ok", key
        assert busy_values[key].value == pytest.approx(value.value, abs=1e-6), key


def test_the_bertscore_model_loads_while_the_image_metrics_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """compute_run_metrics starts the text group's model load on a thread of its own before the
    image group runs, and a load that fails there is reported by the text group as usual."""
    import threading

    import rubric_judge.metrics as metrics
    from rubric_judge.metrics import text as text_module
    from rubric_judge.metrics.types import MetricValue
    from rubric_judge.planning.samples import Sample
    from rubric_judge.rubrics.schema import IMAGE_METRICS, MetricSpec

    loads: list[str] = []
    loading = threading.Event()

    def get_bertscorer(options, device="auto"):
        loads.append(threading.current_thread().name)
        loading.set()
        raise text_module.MetricUnavailable("no model in this test")

    real_compute = metrics._compute

    def compute(group, pairs, device):
        if group[0].metric in IMAGE_METRICS:
            assert loading.wait(30), "the text model was not loading while the image metrics ran"
            return {(sample_id, spec.metric.value): MetricValue(0.5, "ok") for sample_id, _, _ in pairs for spec in group}
        return real_compute(group, pairs, device)

    monkeypatch.setattr(text_module, "get_bertscorer", get_bertscorer)
    monkeypatch.setattr(metrics, "_compute", compute)
    specs = [MetricSpec(metric="ssim", output="out", reference="ref", preset="medgen"),
             MetricSpec(metric="bertscore", output="response", reference="answer", model=str(tmp_path), num_layers=6)]
    samples = [Sample(f"s{i}", {"out": tmp_path / f"o{i}.png", "ref": tmp_path / f"r{i}.png", "response": "a cat", "answer": "a dog"})
               for i in range(3)]
    rows = metrics.compute_run_metrics(specs, samples, device="cpu")
    assert loads[0] == "rubric-judge-bertscore-load" and len(loads) == 2  # then the text group's own call
    assert {row.status for row in rows if row.metric.startswith("bertscore")} == {"unavailable"}
    assert {row.value for row in rows if row.metric == "ssim"} == {0.5}
