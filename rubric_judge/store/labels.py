"""Expert labels into the results database (`rubric-judge labels import`), for `agree`.

A labels file is JSON Lines, one label a line:

    {"sample_id": "t1", "criterion_id": "sa-1", "rater_id": "r1", "label": true}      # binary rubrics
    {"sample_id": "t1", "dimension": "fidelity", "rater_id": "r2", "label": 7, "note": "..."}  # scale rubrics

Every line is checked before anything is written; all bad lines are reported at once with
their line numbers (exit code 2) and the database is left as it was. The rubric the labels are
for (`--rubric`, else every rubric in the database) decides what a label may be: true/false for
binary rubrics, an integer on the scale for scale rubrics; a criterion or dimension the rubric's
runs never judged is refused as a likely typo. The rows go to the `labels` table (migration 5)
with the file's absolute path as `source`: importing the same file again replaces its rows, in
one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location, Problem, UserError, read_user_text
from rubric_judge.redaction import redact_data


@dataclass(frozen=True)
class LabelImport:
    """What an import wrote.

    Attributes:
        source: the file, as an absolute path (the rows' `source`).
        labels: rows written.
        replaced: rows of an earlier import of the same file that were replaced.
        raters: distinct rater ids.
        samples: distinct sample ids.
    """

    source: Path
    labels: int
    replaced: int
    raters: int
    samples: int


@dataclass(frozen=True)
class _Rubric:
    """What the database knows of the rubric(s) labelled: scale bounds and judged names."""

    binary: bool
    scales: tuple[tuple[float, float], ...]
    criteria: frozenset[str]
    dimensions: frozenset[str]
    names: tuple[str, ...]


def import_labels(db: Path, path: Path, rubric_id: str | None = None) -> LabelImport:
    """Validate a labels file and store it, replacing an earlier import of the same file.

    Args:
        db: the results database (created when absent).
        path: the JSON Lines labels file.
        rubric_id: the rubric the labels are for; None: any rubric in the database.

    Returns:
        How many labels were written and replaced.

    Raises:
        UserError: every bad line (file:line, field, fix); nothing is written.
    """
    from rubric_judge.store.db import ResultStore

    path = Path(path)
    source = path.resolve()
    text = read_user_text(path, "labels file", "JSON Lines")
    # A database that does not exist yet is created only once the file is known to be good.
    store = ResultStore(Path(db)) if Path(db).exists() else None
    try:
        rubric = _rubric(store.con, Path(db), rubric_id) if store else None
        rows = _parse(path, text, rubric)
        store = store or ResultStore(Path(db))
        now = datetime.now(UTC).replace(tzinfo=None)
        with store._writing("store the labels"), store._transaction():
            replaced = store.con.execute("SELECT count(*) FROM labels WHERE source = ?", [str(source)]).fetchone()[0]
            store.con.execute("DELETE FROM labels WHERE source = ?", [str(source)])
            if rows:
                columns = ["source", "line", "rubric_id", "sample_id", "criterion_id", "dimension", "rater_id", "label", "note", "imported_at"]
                values = [[str(source), line, rubric_id, *redact_data(fields), now] for line, fields in rows]
                store.con.execute(f"INSERT INTO labels ({', '.join(columns)}) SELECT {', '.join(f'unnest(${i + 1})' for i in range(len(columns)))}",
                                  [list(column) for column in zip(*values, strict=True)])
    finally:
        if store is not None:
            store.close()
    return LabelImport(source, len(rows), replaced, len({f[3] for _, f in rows}), len({f[0] for _, f in rows}))


def _rubric(con, db: Path, rubric_id: str | None) -> _Rubric | None:
    """The labelled rubric as the database's runs know it; None when it has no runs yet."""
    where, params = ("WHERE rubric_id = ?", [rubric_id]) if rubric_id else ("", [])
    runs = con.execute(f"SELECT run_id, rubric_id, scale_min, scale_max FROM runs {where}", params).fetchall()
    if not runs:
        if rubric_id:
            known = ", ".join(r[0] for r in con.execute("SELECT DISTINCT rubric_id FROM runs ORDER BY 1").fetchall())
            if known:
                raise UserError(Problem(Location(db), f"no run of rubric {rubric_id!r} in the database (rubrics: {known})", field="--rubric",
                                        fix="pass the rubric id of a scored run"))
        return None
    ids = [r[0] for r in runs]
    marks = ", ".join("?" * len(ids))
    criteria = con.execute(f"SELECT DISTINCT criterion_id, dimension FROM verdicts WHERE run_id IN ({marks})", ids).fetchall()
    scales = tuple(sorted({(r[2], r[3]) for r in runs if r[2] is not None}))
    return _Rubric(binary=any(r[2] is None for r in runs), scales=scales, criteria=frozenset(c for c, _ in criteria),
                   dimensions=frozenset(d for _, d in criteria if d), names=tuple(sorted({r[1] for r in runs})))


def _parse(path: Path, text: str, rubric: _Rubric | None) -> list[tuple[int, list[Any]]]:
    """(line, [sample_id, criterion_id, dimension, rater_id, label, note]) per label line."""
    rows, problems = [], []
    seen: dict[tuple[str, str, str], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue

        def problem(message: str, field: str = "", fix: str = "", column: int = 1, number: int = number) -> None:
            problems.append(Problem(Location(path, number, column), message, field=field, fix=fix))

        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problem(f"not valid JSON: {exc.msg}", column=exc.colno, fix="one JSON object per line")
            continue
        if not isinstance(value, dict):
            problem("each line must be a JSON object", fix='write {"sample_id": ..., "criterion_id": ..., "rater_id": ..., "label": true}')
            continue
        before = len(problems)
        strings = {}
        for key in ("sample_id", "rater_id"):
            item = value.get(key)
            if not isinstance(item, str) or not item.strip():
                problem(f"missing or not a non-empty string: {json.dumps(item)}" if key in value else "missing", field=key,
                        fix=f'give every line a string "{key}"')
            strings[key] = item
        criterion, dimension = value.get("criterion_id"), value.get("dimension")
        for key, item in (("criterion_id", criterion), ("dimension", dimension)):
            if item is not None and (not isinstance(item, str) or not item.strip()):
                problem(f"must be a non-empty string, not {json.dumps(item)}", field=key)
        if (criterion is None) == (dimension is None):
            problem("give exactly one of criterion_id (binary rubrics) or dimension (scale rubrics)", field="criterion_id",
                    fix="label a criterion with true/false, or a scale rubric's dimension with its score")
        note = value.get("note")
        if note is not None and not isinstance(note, str):
            problem(f"must be a string, not {json.dumps(note)}", field="note")
        label = _label(value, criterion is not None, rubric, problem)
        if rubric is not None and isinstance(criterion, str) and criterion not in rubric.criteria:
            problem(f"criterion {criterion!r} was never judged in the runs of {', '.join(rubric.names)}", field="criterion_id",
                    fix="check the criterion id (rubric-judge query \"SELECT DISTINCT criterion_id FROM verdicts\") or pass --rubric")
        if rubric is not None and isinstance(dimension, str) and dimension not in rubric.dimensions:
            problem(f"dimension {dimension!r} was never judged in the runs of {', '.join(rubric.names)}", field="dimension",
                    fix=f"one of: {', '.join(sorted(rubric.dimensions))}")
        if len(problems) > before:
            continue
        key = (strings["sample_id"], criterion or f"dimension:{dimension}", strings["rater_id"])
        if key in seen:
            problem(f"rater {key[2]!r} already labelled this sample's {'criterion' if criterion else 'dimension'} on line {seen[key]}",
                    field="rater_id", fix="keep one label per sample, criterion (or dimension) and rater")
            continue
        seen[key] = number
        rows.append((number, [strings["sample_id"], criterion, dimension, strings["rater_id"], label, note]))
    if problems:
        raise UserError(problems)
    return rows


def _label(value: dict[str, Any], binary: bool, rubric: _Rubric | None, problem) -> float | None:
    """The label as stored (1/0 or the scale value), or None after reporting what is wrong."""
    if "label" not in value:
        problem("missing", field="label", fix="true/false for a criterion, an integer on the scale for a dimension")
        return None
    label = value["label"]
    if binary:
        if rubric is not None and not rubric.binary:
            problem(f"rubric {', '.join(rubric.names)} is judged on a scale: label its dimensions, not criteria", field="criterion_id",
                    fix='write "dimension": ... with an integer label')
            return None
        if not isinstance(label, bool):
            problem(f"must be true or false for a criterion, not {json.dumps(label)}", field="label", fix="true = met, false = not met")
            return None
        return 1.0 if label else 0.0
    if isinstance(label, bool) or not isinstance(label, int | float) or label != int(label):
        problem(f"must be an integer on the rubric's scale, not {json.dumps(label)}", field="label", fix="e.g. 7 on a 1..10 scale")
        return None
    if rubric is not None:
        if not rubric.scales:
            problem(f"rubric {', '.join(rubric.names)} is judged met/not met: label its criteria, not dimensions", field="dimension",
                    fix='write "criterion_id": ... with label true or false')
            return None
        if not any(low <= label <= high for low, high in rubric.scales):
            bounds = " or ".join(f"{low:g}..{high:g}" for low, high in rubric.scales)
            problem(f"{label:g} is outside the scale {bounds}", field="label", fix=f"give an integer in {bounds}")
            return None
    return float(label)
