"""Texts as MedGEN-Bench's official evaluation compares them.

Ported from github.com/yangjj007/MedGEN-Bench-eval (eval.py `canonical_answer_text` and
`canonical_response_text`, util/clinical_text_metrics.py): before BERTScore, the answer and the
response of a multiple-choice or blank-filling task are both mapped to a canonical option ("B",
"b)" and "Pneumothorax" all become "b. pneumothorax" when that is choice B; otherwise the text
lower-cased, spaces collapsed), a structured answer (a dict of report sections) is written out
section by section in report order, and any other text has its spaces collapsed.

`text_form: medgen_eval` on a text metric applies `medgen_eval_text` to both of its texts; the
MedGEN importer writes structured answers with `serialize_clinical_reference`. Such an answer
then reaches `medgen_eval_text` as text, and its line breaks read as spaces: the same tokens for
WordPiece models (PubMedBERT, the MiniLM), not necessarily for byte-level BPE ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

SECTION_ORDER = ("STUDY", "EXAMINATION", "MODALITY", "CLINICAL_HISTORY", "INDICATION", "HISTORY", "TECHNIQUE", "COMPARISON",
                 "FINDINGS", "IMPRESSION", "RECOMMENDATION", "NOTIFICATION")
CLOSED_FORM_TASKS = frozenset({"multiple-choice", "blank-filling"})
# eval.py PAPER_TASK_ALIASES
_TASK_ALIASES = {"organ-removal": "organic-removal", "organ-reconstruction": "organic-reconstruction",
                 "3d_to_2d_projection": "3d-to-2d-projection", "2d_to_3d_reconstruction": "2d-to-3d-reconstruction"}
_OPTION = re.compile(r"^\s*([A-Z])[\.)\]:-]\s*(.*)$")
_LETTER_ONLY = re.compile(r"^\s*([A-Z])\s*$")
_SPACES = re.compile(r"\s+")


def medgen_eval_text(text: Any, fields: Mapping[str, Any], answer: bool = False) -> str:
    """`text` as the official evaluation hands it to BERTScore, for the sample with `fields`.

    Args:
        text: the response or the reference answer (None is "").
        fields: the sample's fields: `paper_task` (or `sub_category`) and `choice` (the options
            of a multiple-choice task) decide the form.
        answer: `text` is the reference answer, which may be a structured (dict) report.

    Returns:
        A structured answer serialized; the canonical option for a multiple-choice or
        blank-filling task; otherwise the text with its whitespace collapsed.
    """
    if answer and isinstance(text, dict):
        return serialize_clinical_reference(text)
    text = str(text or "")
    task = paper_task(fields.get("paper_task") or fields.get("sub_category") or fields.get("sub-category"))
    if task in CLOSED_FORM_TASKS:
        choices = fields.get("choice")
        return closed_form(text, choices if isinstance(choices, list) else [])
    return " ".join(text.strip().split())


def paper_task(value: Any) -> str:
    """eval.py `normalize_paper_task`: lower case, `_` as `-`, the release's aliases."""
    name = str(value or "").strip().lower().replace("_", "-")
    return _TASK_ALIASES.get(name, name)


def closed_form(text: Any, choices: Iterable[Any]) -> str:
    """clinical_text_metrics.py `normalize_closed_form_answer`."""
    normalized = _choice_value(str(text or ""))
    return _choice_mappings(choices).get(normalized, normalized)


def serialize_clinical_reference(answer: Any) -> str:
    """clinical_text_metrics.py `serialize_clinical_reference`: a dict of report sections as
    `KEY: text` lines in report order (nested sections indented, lists joined with "; ")."""
    if isinstance(answer, str):
        return _collapse(answer)
    if not isinstance(answer, dict):
        return _collapse(str(answer))
    lines: list[str] = []
    for key in _ordered(answer):
        _section(str(key), answer[key], lines)
    return "\n".join(lines)


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text.strip())


def _free(text: Any) -> str:
    return _collapse(str(text or "")).lower()


def _choice_value(text: str) -> str:
    text = _free(text)
    letter_only = _LETTER_ONLY.match(text.upper())
    if letter_only:
        return letter_only.group(1).lower()
    match = _OPTION.match(text.upper())
    if match:
        letter, body = match.group(1).lower(), _free(match.group(2))
        return f"{letter}. {body}" if body else letter
    return text


def _choice_mappings(choices: Iterable[Any]) -> dict[str, str]:
    mappings: dict[str, str] = {}
    for raw in choices or []:
        canonical = _choice_value(str(raw))
        mappings[canonical] = canonical
        match = _OPTION.match(_free(raw).upper())
        if match:
            letter, body = match.group(1).lower(), _free(match.group(2))
            mappings[letter] = canonical
            mappings[f"{letter}."] = canonical
            if body:
                mappings[body] = canonical
    return mappings


def _ordered(section: Mapping[Any, Any]) -> list[Any]:
    return sorted(section, key=lambda key: (SECTION_ORDER.index(str(key).upper()) if str(key).upper() in SECTION_ORDER else len(SECTION_ORDER),
                                            str(key).lower()))


def _section(key: str, value: Any, lines: list[str], indent: int = 0) -> None:
    prefix = "  " * indent
    if isinstance(value, dict):
        lines.append(f"{prefix}{key}:")
        for child in _ordered(value):
            _section(str(child), value[child], lines, indent + 1)
        return
    if isinstance(value, list):
        if value:
            lines.append(f"{prefix}{key}: " + "; ".join(_collapse(str(v)) for v in value))
        return
    scalar = _collapse(str(value))
    if scalar:
        lines.append(f"{prefix}{key}: {scalar}")
