"""Compilation and `plan`: call counts per batching mode, samples, outputs and path safety."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubric_judge.cli.app import app
from rubric_judge.errors import UserError
from rubric_judge.planning.compile import JudgeTarget, build_plan
from rubric_judge.planning.job import load_job
from rubric_judge.rubrics.schema import Batching

EXAMPLE = Path(__file__).parents[1] / "examples" / "illugenbench"
TARGET = JudgeTarget("openai/gpt-4.1")


def _criteria_count() -> int:
    return sum(text.count("- {id:") for text in (p.read_text() for p in (EXAMPLE / "tasks").glob("*.yaml")))


def test_call_counts_per_batching_mode():
    job = load_job(EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model")
    tasks = len(job.samples)
    assert tasks == 6
    counts = {mode: len(build_plan(job.rubrics, job.samples, TARGET, mode).calls) for mode in Batching}
    assert counts[Batching.per_dimension] == tasks * 3
    assert counts[Batching.per_criterion] == _criteria_count() == 31
    assert counts[Batching.per_sample] == tasks


def test_missing_output_gets_no_call_and_is_reported():
    job = load_job(EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "weak-model")
    plan = build_plan(job.rubrics, job.samples, TARGET)
    missing = [sp for sp in plan.samples if sp.unjudged]
    assert [sp.sample.id for sp in missing] == ["dna-double-helix"]
    assert missing[0].calls == ()
    assert len(missing[0].unjudged) == 5


def test_messages_put_reference_first_and_cache_keys_are_stable():
    job = load_job(EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model")
    first = build_plan(job.rubrics, job.samples, TARGET).calls
    again = build_plan(job.rubrics, job.samples, TARGET).calls
    assert [c.cache_key for c in first] == [c.cache_key for c in again]
    assert len({c.cache_key for c in first}) == len(first)
    images = first[0].images
    assert [i.field for i in images] == ["reference_image", "generated_image"]
    assert all(i.info.media_type == "image/png" for i in images)
    other_judge = build_plan(job.rubrics, job.samples, JudgeTarget("openai/gpt-4.1", "http://127.0.0.1:9/v1")).calls
    assert not {c.cache_key for c in first} & {c.cache_key for c in other_judge}


def test_response_model_requires_every_criterion():
    from pydantic import ValidationError

    job = load_job(EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model")
    call = build_plan(job.rubrics, job.samples, TARGET).calls[0]
    answer = {"reasoning": "r", "satisfied": True, "confidence": 0.5}
    full = {c.id: answer for c in call.criteria}
    call.response_model.model_validate(full)
    partial = dict(list(full.items())[1:]) if len(full) > 1 else {}
    with pytest.raises(ValidationError):
        call.response_model.model_validate(partial)


def test_manifest_path_escape_is_refused(tmp_path: Path):
    (tmp_path / "data").mkdir()
    secret = tmp_path / "secret.png"
    shutil.copy(EXAMPLE / "references" / "heart-chambers.png", secret)
    manifest = tmp_path / "data" / "manifest.jsonl"
    manifest.write_text(json.dumps({"id": "heart-chambers", "prompt": "p", "reference_image": "../secret.png"}) + "\n")
    with pytest.raises(UserError) as caught:
        load_job(EXAMPLE / "tasks" / "heart-chambers.yaml", manifest, None)
    assert "leaves the dataset directory" in str(caught.value)
    assert "manifest.jsonl:1" in str(caught.value)


def test_outputs_jsonl_and_illugenbench_naming(tmp_path: Path):
    manifest = tmp_path / "manifest.jsonl"
    shutil.copy(EXAMPLE / "references" / "heart-chambers.png", tmp_path / "heart-chambers.jpg")
    manifest.write_text(json.dumps({"id": "heart-chambers.jpg", "prompt": "p", "reference_image": "heart-chambers.jpg"}) + "\n")
    gen = tmp_path / "gen"
    gen.mkdir()
    shutil.copy(EXAMPLE / "outputs" / "good-model" / "heart-chambers.png", gen / "heart-chambers.png")
    rubric = tmp_path / "task.yaml"
    rubric.write_text((EXAMPLE / "tasks" / "heart-chambers.yaml").read_text().replace("task: heart-chambers", "task: heart-chambers.jpg"))
    job = load_job(rubric, manifest, gen)
    assert job.samples[0].missing_outputs == ()
    assert job.samples[0].fields["generated_image"].name == "heart-chambers.png"
    # A PNG named .jpg is sent as what it is.
    call = build_plan(job.rubrics, job.samples, TARGET).calls[0]
    assert call.images[0].info.media_type == "image/png"


def test_plan_cli_shows_all_three_modes():
    result = CliRunner().invoke(
        app,
        ["plan", str(EXAMPLE / "tasks"), "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs", str(EXAMPLE / "outputs" / "good-model")],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert " 18 " in lines["per_dimension (rubric's)"]
    assert " 31 " in lines["per_criterion"]
    assert " 6 " in lines["per_sample"]


def test_image_paths_resolve_as_pathlib_does_with_symlinks_and_dot_dots(tmp_path: Path):
    """planning.samples resolves each directory once (a 6,422-sample manifest would otherwise
    spend seconds in Path.resolve); the result and the escape check must be pathlib's."""
    from rubric_judge.errors import Location
    from rubric_judge.planning.samples import _PathsUnder

    root = tmp_path / "data"
    (root / "images" / "deep").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"x")
    (root / "images" / "inner-link.png").symlink_to(root / "images" / "a.png")
    (root / "images" / "escape.png").symlink_to(tmp_path / "outside.png")
    (root / "linked-dir").symlink_to(root / "images")
    (root / "outer-dir").symlink_to(tmp_path)
    values = ["images/a.png", "images/deep/../a.png", "./images/a.png", "images/inner-link.png", "images/escape.png",
              "linked-dir/a.png", "linked-dir/../images/a.png", "outer-dir/outside.png", "outer-dir/data/images/a.png",
              "../outside.png", "images/../../outside.png", "/etc/hostname", "images/missing.png", "images/..", "images/deep/.", "."]
    paths = _PathsUnder(root)
    for value in values:
        expected = (root.resolve() / value).resolve()
        assert paths.resolve(value) == str(expected), value
        problems: list = []
        got = paths.inside(value, Location(None), "image", problems)
        assert (got is not None) == expected.is_relative_to(root.resolve()), value
        assert got is None or got == expected


def test_the_first_samples_images_are_encoded_side_by_side(monkeypatch: pytest.MonkeyPatch):
    """The first request waits for the first sample's images only: they are encoded on two
    threads at once (PNG encoding releases the GIL), and the plans are those of build_plan.
    It fails when the first sample's images are encoded one after the other."""
    import threading
    import time

    from rubric_judge.planning import compile as compile_module
    from rubric_judge.planning import images as images_module
    from rubric_judge.planning.compile import match_rubrics, plan_samples

    medgen = EXAMPLE.parent / "medgen"
    job = load_job(medgen / "rubric.yaml", medgen / "manifest.jsonl", medgen / "outputs" / "demo-model" / "outputs.jsonl")
    pairs, problems = match_rubrics(job.rubrics, job.samples)
    pairs = [pair for pair in pairs if len(compile_module._images_of(*pair, TARGET)) >= 2]  # samples with two images first
    assert not problems and pairs
    images_module._ENCODED.clear()
    spans: list[tuple[str, float, float]] = []
    encode = images_module.encode_for_judge

    def slow_encode(*args, **kwargs):
        start = time.perf_counter()
        time.sleep(0.3)
        result = encode(*args, **kwargs)
        spans.append((threading.current_thread().name, start, time.perf_counter()))
        return result

    monkeypatch.setattr(images_module, "encode_for_judge", slow_encode)
    first = next(iter(plan_samples(pairs, TARGET, workers=2)))
    (name_a, start_a, end_a), (name_b, start_b, end_b) = spans[:2]
    assert name_a != name_b and max(start_a, start_b) < min(end_a, end_b)  # they overlapped
    assert len(spans) == 2  # compiling the sample found both in the encoded-image cache
    images_module._ENCODED.clear()
    monkeypatch.setattr(images_module, "encode_for_judge", encode)
    assert [c.cache_key for c in first.calls] == [c.cache_key for c in build_plan(job.rubrics, [pairs[0][1]], TARGET).calls]


def test_a_broken_first_image_is_reported_as_the_samples_problem(tmp_path: Path):
    from rubric_judge.errors import Problem
    from rubric_judge.planning.compile import _images_of, match_rubrics, plan_samples

    medgen = tmp_path / "medgen"
    shutil.copytree(EXAMPLE.parent / "medgen", medgen)
    job = load_job(medgen / "rubric.yaml", medgen / "manifest.jsonl", medgen / "outputs" / "demo-model" / "outputs.jsonl")
    pairs, _ = match_rubrics(job.rubrics, job.samples)
    pairs = [pair for pair in pairs if len(_images_of(*pair, TARGET)) >= 2]
    ground_truth = Path(_images_of(*pairs[0], TARGET)[0][0])  # a dataset image, not the model's
    assert ground_truth == pairs[0][1].fields["ground_truth_image"]
    ground_truth.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    results = list(plan_samples(pairs, TARGET, workers=2))
    assert isinstance(results[0], Problem) and "image" in results[0].message.lower(), results[0]
    assert all(not isinstance(r, Problem) for r in results[1:])


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n not really a png", b"not an image at all", b""])
def test_an_output_image_that_cannot_be_read_is_planned_as_an_absent_output(tmp_path: Path, content: bytes):
    """The model's broken image is its failure, not the dataset's: the sample is planned as if
    that output were absent (here the medgen sample keeps its text answer, so it is judged on
    that alone; a sample left with no output has its criteria unjudged), and the plan says which
    image and why, for the run to report."""
    from rubric_judge.errors import Problem
    from rubric_judge.planning.compile import match_rubrics, plan_samples

    medgen = tmp_path / "medgen"
    shutil.copytree(EXAMPLE.parent / "medgen", medgen)
    job = load_job(medgen / "rubric.yaml", medgen / "manifest.jsonl", medgen / "outputs" / "demo-model" / "outputs.jsonl")
    pairs, _ = match_rubrics(job.rubrics, job.samples)
    with_text = next(pair for pair in pairs if pair[1].fields.get("output_image") and pair[1].fields.get("response"))
    image_only = next(pair for pair in pairs if pair[1].fields.get("output_image") and not pair[1].fields.get("response"))
    for _, sample in (with_text, image_only):
        Path(sample.fields["output_image"]).write_bytes(content)
    text_plan, image_plan = list(plan_samples([with_text, image_only], TARGET, workers=2))
    for plan, (_, sample) in ((text_plan, with_text), (image_plan, image_only)):
        assert not isinstance(plan, Problem), plan
        assert plan.sample.fields["output_image"] is None and sample.fields["output_image"] is not None
        (problem,) = plan.unreadable_outputs
        assert problem.field == "output_image" and str(sample.fields["output_image"]) in problem.message
        assert "output image cannot be read, treated as absent" in problem.message
    assert text_plan.calls and not text_plan.unjudged and text_plan.sample.missing_outputs == ()
    assert all(part.field != "output_image" for call in text_plan.calls for part in call.images)
    assert not image_plan.calls and image_plan.unjudged and image_plan.sample.missing_outputs == ("response", "output_image")


def _copied_example(tmp_path: Path) -> Path:
    copy = tmp_path / "illugenbench"
    shutil.copytree(EXAMPLE, copy)
    return copy


def test_a_call_sends_the_image_bytes_it_was_planned_with_without_reading_the_file_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """What is sent is what the cache key hashed: found by its digest, not by the file's current
    version (a stat per image per call on the event loop). Once the planned bytes have left
    memory, a file that changed since is refused rather than sent under the old key."""
    import base64

    from rubric_judge.judge.messages import build_messages
    from rubric_judge.planning import images as images_module
    from rubric_judge.planning.compile import ImagePart

    example = _copied_example(tmp_path)
    images_module._ENCODED.clear()
    job = load_job(example / "tasks", example / "manifest.jsonl", example / "outputs" / "good-model")
    call = build_plan(job.rubrics, job.samples[:1], TARGET).calls[0]
    parts = [part for part in call.parts if isinstance(part, ImagePart)]
    assert parts
    for part in parts:  # every image file changes after planning
        Path(part.path).write_bytes(Path(part.path).read_bytes() + b"\0")

    def no_file_access(self, *args, **kwargs):
        raise AssertionError(f"{self} was read while sending a planned call")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "stat", no_file_access)
        patched.setattr(Path, "read_bytes", no_file_access)
        messages = build_messages(call)
    urls = [item["image_url"]["url"] for item in messages[-1]["content"] if item["type"] == "image_url"]
    sent = [images_module.hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest() for url in urls]
    assert sent == [part.info.sha256 for part in parts]

    images_module._ENCODED.clear()
    with pytest.raises(RuntimeError, match="changed after the run was planned"):
        build_messages(call)
    images_module._ENCODED.clear()


def test_the_encoded_image_memory_forgets_an_evicted_images_digest_too():
    from rubric_judge.planning.images import EncodedImage, _EncodedCache

    cache = _EncodedCache(budget_bytes=10)
    first, second = EncodedImage(b"123456", "image/png", "a" * 64, 1, 1), EncodedImage(b"abcdef", "image/png", "b" * 64, 1, 1)
    cache.put(("one.png", 1, 6, None, False, None), first)
    assert cache.get_content(("a" * 64, None, False, None)) is first
    assert cache.get_content(("a" * 64, "label", True, None)) is None  # other encoding options: another image
    cache.put(("two.png", 1, 6, None, False, None), second)  # 12 bytes > 10: the first is evicted
    assert cache.get_content(("a" * 64, None, False, None)) is None
    assert cache.get_content(("b" * 64, None, False, None)) is second
    assert not cache.by_content.keys() - {("b" * 64, None, False, None)}


def test_the_same_image_bytes_under_another_file_are_not_decoded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The reward server spools each inline image to a new file, so a reference image sent with
    every rollout would be decoded (validated) each time: bytes already encoded with the same
    options are found by their digest instead. Other options are another image."""
    from rubric_judge.planning import images as images_module

    source = next((EXAMPLE / "references").glob("*.png"))
    first, again, other = (tmp_path / name for name in ("first.png", "again.png", "other.png"))
    for path in (first, again):
        path.write_bytes(source.read_bytes())
    other.write_bytes(source.read_bytes() + b"\0")  # a PNG with trailing bytes: other content
    decoded: list[Path] = []
    decode = images_module.decode_image

    def counting_decode(raw, path):
        decoded.append(Path(path))
        return decode(raw, path)

    monkeypatch.setattr(images_module, "decode_image", counting_decode)
    images_module._ENCODED.clear()
    try:
        encoded = images_module.encoded_image(first)
        assert images_module.encoded_image(again) is encoded and decoded == [first]
        assert images_module.encoded_image(other).sha256 != encoded.sha256 and decoded == [first, other]
        resized = images_module.encoded_image(again, max_side=64)  # other options: decoded and resized
        assert decoded == [first, other, again] and max(resized.width, resized.height) == 64
    finally:
        images_module._ENCODED.clear()


def test_a_data_url_is_built_once_for_the_same_image_and_the_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch):
    """Every call of a sample sends the same images: their base64 is built once while recent,
    and the memory of data URLs forgets the oldest beyond its budget."""
    import base64

    from rubric_judge.planning import images as images_module
    from rubric_judge.planning.images import EncodedImage, _DataURLs

    encodings: list[int] = []
    b64encode = base64.b64encode

    def counting_b64encode(data, *args, **kwargs):
        encodings.append(len(data))
        return b64encode(data, *args, **kwargs)

    monkeypatch.setattr(base64, "b64encode", counting_b64encode)
    monkeypatch.setattr(images_module, "_DATA_URLS", _DataURLs(budget_chars=60))
    first = EncodedImage(b"first image bytes", "image/png", "a" * 64, 1, 1)
    same = EncodedImage(b"first image bytes", "image/png", "a" * 64, 1, 1)  # another object, the same content
    other = EncodedImage(b"other image bytes", "image/jpeg", "b" * 64, 1, 1)
    url = first.data_url()
    assert url == "data:image/png;base64," + b64encode(b"first image bytes").decode() and same.data_url() is url
    assert encodings == [17]
    assert other.data_url().startswith("data:image/jpeg;base64,") and encodings == [17, 17]
    assert images_module._DATA_URLS.used <= 60  # two URLs of 46 characters: the first was forgotten
    first.data_url()
    assert encodings == [17, 17, 17]
