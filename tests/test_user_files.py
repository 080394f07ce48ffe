"""Files the user names (manifests, outputs, benchmark records) are read one way: UTF-8 with or
without a byte-order mark; anything else is an exit-2 error naming the file and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from rubric_judge.errors import UserError
from rubric_judge.planning.samples import read_jsonl


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\n\n{"id": "b"}\n')  # as some Windows editors save it
    assert read_jsonl(path) == [(1, {"id": "a"}), (3, {"id": "b"})]


def test_latin1_and_missing_files_are_user_errors(tmp_path: Path) -> None:
    latin = tmp_path / "manifest.jsonl"
    latin.write_bytes('{"id": "R\u00f6ntgen"}\n'.encode("latin-1"))
    with pytest.raises(UserError) as caught:
        read_jsonl(latin)
    problem = caught.value.problems[0]
    assert (problem.location.file, problem.message, problem.fix) == (latin, "the JSONL file is not UTF-8 text", "save it as UTF-8 JSONL")
    with pytest.raises(UserError, match="cannot read the JSONL file: No such file or directory"):
        read_jsonl(tmp_path / "absent.jsonl")
