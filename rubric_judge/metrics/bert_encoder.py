"""BERT checkpoints for BERTScore, loaded and run without importing transformers.

Building a model through transformers costs 4-6 s of a cold start on 2 cores, nearly all of it
imports (its modeling code pulls in torch._dynamo, scipy.optimize and torchvision), while a BERT
encoder is a few dozen tensor operations. PubMedBERT, the model MedGEN-Bench scores with, and the
packaged MiniLM are plain BERT encoders, so BERTScore loads a checkpoint here when its
`config.json` says so (`model_type` "bert", absolute positions, GELU, an encoder) and its
weights and vocabulary are files this module reads; any other checkpoint goes through
transformers (metrics/text.py).

What runs is what transformers' `BertModel` computes with its default ("sdpa") attention, in the
same order of operations, and the tokenizer is the one transformers builds for a BERT vocabulary
(`BertTokenizer`: the `tokenizers` library's WordPiece with BERT's normalizer and pre-tokenizer,
[CLS] and [SEP] around each text, the special tokens never split). tests/test_bert_encoder.py checks the
token ids and the embeddings against transformers and the scores against `bert_score.score`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# transformers' tokenizer default when a checkpoint declares no length (VERY_LARGE_INTEGER);
# text.py's _clamp_max_length caps it at the model's position embeddings, as for transformers.
_UNDECLARED_LENGTH = int(1e30)
_SPECIAL = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_SPECIAL_DEFAULTS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _weights_file(model_dir: Path) -> Path | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    return None


def supported(model_dir: Path) -> bool:
    """Whether the checkpoint in `model_dir` is a BERT encoder this module runs as transformers
    does: a BERT config with absolute positions, exact GELU and float32 weights, a weights file,
    and a WordPiece vocabulary with no special tokens beyond BERT's five."""
    try:
        config = _read_json(model_dir / "config.json")
        tokenizer = {**_read_json(model_dir / "special_tokens_map.json"), **_read_json(model_dir / "tokenizer_config.json")}
    except (OSError, ValueError):
        return False
    added = tokenizer.get("added_tokens_decoder") or {}
    return (
        config.get("model_type") == "bert"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and config.get("hidden_act", "gelu") == "gelu"
        and (config.get("dtype") or config.get("torch_dtype")) in (None, "float32")  # a float16 checkpoint may load as such
        and not config.get("is_decoder", False)
        and not config.get("add_cross_attention", False)
        and not tokenizer.get("additional_special_tokens")
        and isinstance(added, dict)
        and all(_token_text(token) in _SPECIAL_DEFAULTS.values() for token in added.values())
        and _weights_file(model_dir) is not None
        and _vocabulary(model_dir) is not None
    )


def _vocabulary(model_dir: Path) -> dict[str, int] | None:
    """The WordPiece vocabulary transformers builds a BERT tokenizer from: tokenizer.json's
    (a WordPiece model whose only added tokens are the special ones), else vocab.txt's lines;
    None when there is neither, or tokenizer.json holds something else. Read once per file
    version: `supported` and `BertTokenizer` both need it (MiniLM's tokenizer.json: ~40 ms)."""
    for name in ("tokenizer.json", "vocab.txt"):
        try:
            stat = (model_dir / name).stat()
        except OSError:
            continue
        return _read_vocabulary(str(model_dir / name), stat.st_mtime_ns, stat.st_size)
    return None


@lru_cache(maxsize=8)
def _read_vocabulary(path: str, mtime_ns: int, size: int) -> dict[str, int] | None:
    """`_vocabulary` of one file version (`mtime_ns` and `size` key the cache; callers never
    change the dict)."""
    try:
        if path.endswith(".json"):
            saved = _read_json(Path(path))
            model = saved.get("model") or {}
            added = {token.get("content") for token in saved.get("added_tokens") or [] if isinstance(token, dict)}
            if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict) or not added <= set(_SPECIAL_DEFAULTS.values()):
                return None
            return {str(token): int(index) for token, index in model["vocab"].items()}
        with open(path, encoding="utf-8") as lines:
            return {line.rstrip("\n"): index for index, line in enumerate(lines)}
    except (OSError, ValueError, TypeError, AttributeError):
        return None


class BertTokenizer:
    """The subset of transformers' `BertTokenizer` that BERTScore uses (encode with truncation,
    tokenize, the special token ids and `model_max_length`), on the `tokenizers` library."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordPiece

        settings = {**_read_json(model_dir / "special_tokens_map.json"), **_read_json(model_dir / "tokenizer_config.json")}
        special = {name: _token_text(settings.get(name)) or default for name, default in _SPECIAL_DEFAULTS.items()}
        vocab = _vocabulary(model_dir)
        if vocab is None:
            raise ValueError(f"no WordPiece vocabulary (tokenizer.json or vocab.txt) in {model_dir}")
        tokenizer = Tokenizer(WordPiece(vocab, unk_token=special["unk_token"]))
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
            strip_accents=settings.get("strip_accents"),
            lowercase=bool(settings.get("do_lower_case", True)),
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        # Special tokens in a text stay whole ("[MASK]" is one token), as transformers adds them.
        tokenizer.add_special_tokens([AddedToken(special[name], special=True, normalized=False) for name in _SPECIAL])
        self._tokenizer = tokenizer
        self.cls_token_id = tokenizer.token_to_id(special["cls_token"])
        self.sep_token_id = tokenizer.token_to_id(special["sep_token"])
        self.pad_token_id = tokenizer.token_to_id(special["pad_token"])
        declared = settings.get("model_max_length")
        self.model_max_length = int(declared) if isinstance(declared, int | float) and declared > 0 else _UNDECLARED_LENGTH

    def encode(self, text: str) -> list[int]:
        """[CLS] + word piece ids + [SEP], the pieces cut to `model_max_length` - 2: what
        transformers' `encode(text, add_special_tokens=True, max_length=model_max_length,
        truncation=True)` gives for one text."""
        pieces = self._tokenizer.encode(text, add_special_tokens=False).ids
        return [self.cls_token_id, *pieces[: max(0, self.model_max_length - 2)], self.sep_token_id]

    def tokenize(self, text: str) -> list[str]:
        """The word pieces of `text`, without special tokens or truncation."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def num_special_tokens_to_add(self) -> int:
        """[CLS] and [SEP]."""
        return 2


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json gives it: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


@dataclass(frozen=True)
class BertConfig:
    """What the forward pass needs of config.json (`max_position_embeddings` caps the tokenizer's
    length: text.py's _clamp_max_length)."""

    hidden_size: int
    num_attention_heads: int
    layer_norm_eps: float
    max_position_embeddings: int
    num_layers: int


def load_bert(model_dir: Path, num_layers: int, device: str) -> Any:
    """The first `num_layers` encoder layers of the BERT checkpoint in `model_dir` (check
    `supported` first), on `device`, in eval mode: called as ``model(ids, attention_mask=mask)``
    it returns ``(last_hidden_state,)``, as `BertModel` with its encoder cut to `num_layers`
    (what bert_score's `get_model` builds) does.

    The checkpoint's tensors are the module's buffers, used through torch.nn.functional (the
    functions nn.Linear, nn.LayerNorm and nn.Embedding call): building nn.Linear layers would
    first fill PubMedBERT's 110M parameters at random, about a second, only to overwrite them."""
    import torch
    from torch import nn

    raw = _read_json(model_dir / "config.json")
    available = int(raw["num_hidden_layers"])
    if not 0 <= num_layers <= available:
        raise ValueError(f"num_layers {num_layers} is not between 0 and the model's {available} layers")
    config = BertConfig(
        hidden_size=int(raw["hidden_size"]), num_attention_heads=int(raw["num_attention_heads"]),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)), max_position_embeddings=int(raw.get("max_position_embeddings", 512)),
        num_layers=num_layers,
    )
    weights = _renamed(_read_weights(_weights_file(model_dir)), num_layers)
    expected = set(_EMBEDDINGS.values()) | {f"layers.{index}.{module}.{parameter}" for index in range(num_layers)
                                            for module in _LAYER.values() for parameter in ("weight", "bias")}
    if set(weights) != expected:
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"the checkpoint's weights do not make a BERT encoder (missing {missing[:3]}, unexpected {unexpected[:3]})")
    functional = nn.functional
    size, eps = config.hidden_size, config.layer_norm_eps
    head_size = size // config.num_attention_heads

    class Bert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, tensor in weights.items():
                self.register_buffer(name.replace(".", "__"), tensor.float(), persistent=False)
            self.config = config

        def tensor(self, name: str) -> Any:
            return getattr(self, name.replace(".", "__"))

        def linear(self, x: Any, name: str) -> Any:
            return functional.linear(x, self.tensor(f"{name}.weight"), self.tensor(f"{name}.bias"))

        def norm(self, x: Any, name: str) -> Any:
            return functional.layer_norm(x, (size,), self.tensor(f"{name}.weight"), self.tensor(f"{name}.bias"), eps)

        def forward(self, input_ids: Any, attention_mask: Any = None, **_: Any) -> tuple[Any]:
            length = input_ids.shape[1]
            positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
            hidden = functional.embedding(input_ids, self.tensor("word_embeddings.weight"))
            hidden = hidden + functional.embedding(torch.zeros_like(positions), self.tensor("token_type_embeddings.weight"))
            hidden = self.norm(hidden + functional.embedding(positions, self.tensor("position_embeddings.weight")), "embedding_norm")
            mask = None
            if attention_mask is not None and not bool(attention_mask.all()):
                # transformers' bidirectional mask for sdpa: key j visible to every query where it is a token.
                mask = attention_mask.bool()[:, None, None, :].expand(-1, 1, length, length)
            shape = (*hidden.shape[:-1], -1, head_size)
            for index in range(num_layers):
                layer = f"layers.{index}"
                query = self.linear(hidden, f"{layer}.query").view(shape).transpose(1, 2)
                key = self.linear(hidden, f"{layer}.key").view(shape).transpose(1, 2)
                value = self.linear(hidden, f"{layer}.value").view(shape).transpose(1, 2)
                context = functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0,
                                                                  scale=head_size**-0.5, is_causal=False)
                context = context.transpose(1, 2).contiguous().reshape(*hidden.shape[:-1], -1).contiguous()
                attended = self.norm(self.linear(context, f"{layer}.attention_dense") + hidden, f"{layer}.attention_norm")
                expanded = functional.gelu(self.linear(attended, f"{layer}.intermediate"))
                hidden = self.norm(self.linear(expanded, f"{layer}.output") + attended, f"{layer}.output_norm")
            return (hidden,)

    return Bert().to(device).eval()


def _read_weights(path: Path | None) -> dict[str, Any]:
    if path is None:
        raise FileNotFoundError("no model.safetensors or pytorch_model.bin")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


# transformers' parameter names (after an optional "bert." prefix) -> this module's.
_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "word_embeddings.weight",
    "embeddings.position_embeddings.weight": "position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "token_type_embeddings.weight",
    "embeddings.LayerNorm.weight": "embedding_norm.weight",
    "embeddings.LayerNorm.bias": "embedding_norm.bias",
}
_LAYER = {
    "attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
    "attention.output.dense": "attention_dense", "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate", "output.dense": "output", "output.LayerNorm": "output_norm",
}
# Older checkpoints (the original TF conversions, PubMedBERT's among them) name LayerNorm's
# parameters gamma/beta.
_LEGACY = {".gamma": ".weight", ".beta": ".bias"}


def _renamed(weights: dict[str, Any], num_layers: int) -> dict[str, Any]:
    """The encoder's weights under this module's names: embeddings and the first `num_layers`
    layers; the pooler, heads and later layers are left out, as BertModel cut to `num_layers`
    never uses them."""
    renamed: dict[str, Any] = {}
    for name, tensor in weights.items():
        for old, new in _LEGACY.items():
            if name.endswith(old):
                name = name[: -len(old)] + new
        name = name.removeprefix("bert.")
        if name in _EMBEDDINGS:
            renamed[_EMBEDDINGS[name]] = tensor
            continue
        if not name.startswith("encoder.layer."):
            continue
        index, _, rest = name.removeprefix("encoder.layer.").partition(".")
        if int(index) >= num_layers:
            continue
        module, _, parameter = rest.rpartition(".")
        if module in _LAYER:
            renamed[f"layers.{index}.{_LAYER[module]}.{parameter}"] = tensor
    return renamed
