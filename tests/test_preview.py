"""`preview`: one sample's judge calls exactly as `score` sends them, offline (library and CLI)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import rubric_judge as rj
from rubric_judge.errors import UserError
from rubric_judge.testing.loopback import decode_data_url

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
TASKS, MANIFEST, GOOD = EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model"
JUDGE = "openai/test-judge"
CLI = [sys.executable, "-c", "from rubric_judge.cli.app import main; main()"]


def _sent(body: dict) -> tuple:
    """What a request carried: the system text, the user's text parts, the images' bytes."""
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), None)
    user = next(m for m in body["messages"] if m["role"] == "user")["content"]
    texts = tuple(p["text"] for p in user if p["type"] == "text")
    images = tuple(decode_data_url(p["image_url"]["url"]) for p in user if p["type"] == "image_url")
    return system, texts, tuple(len(i) for i in images)


def _previewed(call: rj.PreviewCall) -> tuple:
    system = next((m.parts[0].text for m in call.messages if m.role == "system"), None)
    user = next(m for m in call.messages if m.role == "user").parts
    return system, tuple(p.text for p in user if p.kind == "text"), tuple(p.bytes for p in user if p.kind == "image")


def test_preview_shows_what_the_judge_then_receives_and_the_cache_state(judge_server, tmp_path: Path):
    options = {"judge": JUDGE, "api_base": judge_server.base_url, "cache_dir": tmp_path / "cache"}
    before = rj.preview(TASKS, data=MANIFEST, outputs=GOOD, sample="lung-nodule", **options)
    assert judge_server.request_count == 0  # a preview sends nothing
    assert before.sample_id == "lung-nodule" and before.call_count == len(before.calls) == 3
    assert not any(c.cached for c in before.calls) and before.to_pay_usd == before.cost_usd

    result = rj.score(TASKS, data=MANIFEST, outputs=GOOD, model="m", db=tmp_path / "r.duckdb", samples=["lung-nodule"], **options)
    assert result.status == "partial" and result.calls == 3
    # Text verbatim and image bytes as sent, call for call (the order calls are sent in is not fixed).
    assert sorted(_sent(body) for body in judge_server.requests) == sorted(_previewed(c) for c in before.calls)
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        stored = {row[0] for row in con.execute("SELECT cache_key FROM judge_calls").fetchall()}
    assert stored == {c.cache_key for c in before.calls}

    after = rj.preview(TASKS, data=MANIFEST, outputs=GOOD, sample="lung-nodule", **options)
    assert all(c.cached for c in after.calls) and after.to_pay_usd == 0
    # Another judge server is another cache key: not cached.
    elsewhere = rj.preview(TASKS, data=MANIFEST, outputs=GOOD, sample="lung-nodule", judge=JUDGE, api_base="http://127.0.0.1:9/v1",
                           cache_dir=tmp_path / "cache")
    assert not any(c.cached for c in elsewhere.calls)


def test_preview_describes_images_and_schema_and_is_immutable(tmp_path: Path):
    shown = rj.preview(TASKS, data=MANIFEST, outputs=GOOD, call=2, cache_dir=tmp_path / "cache")
    assert shown.sample_id == "heart-chambers" and [c.index for c in shown.calls] == [2] and shown.call_count == 3  # default: the first sample
    call = shown.calls[0]
    images = [p for m in call.messages for p in m.parts if p.kind == "image"]
    assert [(i.field, i.media_type, i.width, i.height) for i in images] == [("reference_image", "image/png", 256, 256), ("generated_image", "image/png", 256, 256)]
    # PNGs are sent as they are: the bytes sent are the file's.
    assert [i.bytes for i in images] == [Path(i.file).stat().st_size for i in images]
    assert set(call.response_schema["required"]) == set(call.criteria) and call.structured_output == "tools"
    assert call.prompt_tokens > 0 and call.cost_usd is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.cached = True  # type: ignore[misc]
    small = rj.preview(TASKS, data=MANIFEST, outputs=GOOD, call=2, max_image_side=128, cache_dir=tmp_path / "cache")
    resized = [p for m in small.calls[0].messages for p in m.parts if p.kind == "image"]
    assert [(i.width, i.height) for i in resized] == [(128, 128), (128, 128)] and small.calls[0].cache_key != call.cache_key


def test_preview_of_a_text_rubric_has_the_rendered_prompt_verbatim(tmp_path: Path):
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(
        "rubric: demo/summary\njudge: {model: openai/gpt-4.1, mode: per_sample}\ninputs: {report: text, summary: text}\noutputs: [summary]\n"
        "dimensions: [{id: accuracy}]\ncriteria:\n  - {id: acc-1, dimension: accuracy, weight: 2, text: \"States [the] main finding.\"}\n"
        "system: \"You grade summaries.\"\nprompt: |\n  Report: {{ report }}\n  Summary: {{ summary }}\n"
        "  {% for c in criteria %}{{ c.number }}. [{{ c.id }}] {{ c.text }}\n  {% endfor %}\nscoring: {method: weighted_points}\n")
    (tmp_path / "m.jsonl").write_text('{"id": "s1", "report": "CT: 2 cm [liver] lesion."}\n')
    (tmp_path / "o.jsonl").write_text('{"id": "s1", "summary": "Liver lesion."}\n')
    shown = rj.preview(rubric, data=tmp_path / "m.jsonl", outputs=tmp_path / "o.jsonl", cache_dir=tmp_path / "cache")
    (call,) = shown.calls
    assert [(m.role, [p.text for p in m.parts]) for m in call.messages] == [
        ("system", ["You grade summaries."]),
        ("user", ["Report: CT: 2 cm [liver] lesion.\nSummary: Liver lesion.\n1. [acc-1] States [the] main finding."]),
    ]


def test_preview_cli_json_text_and_user_errors(tmp_path: Path):
    common = [str(TASKS), "--data", str(MANIFEST), "--outputs", str(GOOD), "--cache-dir", str(tmp_path / "cache")]
    as_json = subprocess.run([*CLI, "preview", *common, "--sample", "cell-organelles", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["sample_id"] == "cell-organelles" and len(data["calls"]) == data["call_count"] == 3
    assert "base64" not in as_json.stdout and "data:image" not in as_json.stdout  # images described, never sent as data
    image = next(p for p in data["calls"][0]["messages"][-1]["parts"] if p["kind"] == "image")
    assert set(image) >= {"label", "field", "file", "media_type", "width", "height", "bytes"}

    text = subprocess.run([*CLI, "preview", *common, "--call", "1"], capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "Call 1 of 3: scientific_accuracy" in text.stdout and "not cached" in text.stdout
    assert "[image 'Generated illustration (the one to judge)', field generated_image" in text.stdout

    unknown = subprocess.run([*CLI, "preview", *common, "--sample", "nope"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "no sample with id 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
    out_of_range = subprocess.run([*CLI, "preview", *common, "--call", "4"], capture_output=True, text=True, timeout=120)
    assert out_of_range.returncode == 2 and "call 4 is out of range: sample 'heart-chambers' has calls 1..3" in out_of_range.stderr


def test_preview_library_errors(tmp_path: Path):
    with pytest.raises(UserError, match="no sample with id 'nope'"):
        rj.preview(TASKS, data=MANIFEST, outputs=GOOD, sample="nope", cache_dir=tmp_path)
    with pytest.raises(UserError, match="call 0 is out of range"):
        rj.preview(TASKS, data=MANIFEST, outputs=GOOD, call=0, cache_dir=tmp_path)
    missing = rj.preview(TASKS, data=MANIFEST, outputs=EXAMPLE / "outputs" / "weak-model", sample="dna-double-helix", cache_dir=tmp_path)
    assert missing.calls == () and missing.missing_outputs == ("generated_image",) and missing.missing_output_policy == "fail"
