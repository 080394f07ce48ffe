"""The loopback judge server and the offline judge, driven through instructor + litellm as the pipeline does."""

from __future__ import annotations

import os

# Before litellm is imported: use the bundled model cost map instead of fetching it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import base64
import functools
import io
import json
import time
import urllib.error
import urllib.request
from typing import Any

import instructor
import litellm
import numpy as np
import pytest
from instructor.core import IncompleteOutputException, InstructorRetryException
from PIL import Image
from pydantic import BaseModel, Field, ValidationError, create_model

from rubric_judge.judge.offline import OFFLINE_JUDGE_API_KEY, OFFLINE_JUDGE_MODEL, criterion_threshold, offline_policy, start_offline_judge
from rubric_judge.testing.loopback import CriterionQuestion, Fault, FaultKind, LoopbackJudge, deterministic_policy

MODEL = "openai/loopback-test"
API_KEY = "sk-loopback-test"


class BinaryVerdict(BaseModel):
    reasoning: str
    satisfied: bool
    confidence: float = Field(ge=0, le=1)


class ScaleVerdict(BaseModel):
    reasoning: str
    score: int = Field(ge=1, le=5)


CRITERIA: dict[str, tuple[type[BaseModel], str]] = {
    "sa-1": (BinaryVerdict, "The lesion is visible in the left lung."),
    "sa-2": (ScaleVerdict, "How closely does the texture match the reference?"),
    "sa-3": (BinaryVerdict, "No text or watermark appears in the image."),
}


def verdicts_model(criteria: dict[str, tuple[type[BaseModel], str]] = CRITERIA) -> type[BaseModel]:
    fields: dict[str, Any] = {
        criterion_id.replace("-", "_"): (verdict, Field(alias=criterion_id, description=text))
        for criterion_id, (verdict, text) in criteria.items()
    }
    return create_model("Verdicts", **fields)


Verdicts = verdicts_model()


def png_data_url(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def gradient_image(size: int = 96) -> np.ndarray:
    row = np.linspace(0, 255, size)
    return np.stack([np.tile(row, (size, 1))] * 3, axis=-1)


def judge_messages(*image_urls: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Judge the generated image against the reference."}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
    return [{"role": "system", "content": "You are a careful medical image judge."}, {"role": "user", "content": parts}]


def ask(
    server: LoopbackJudge,
    *,
    mode: instructor.Mode = instructor.Mode.TOOLS,
    messages: list[dict[str, Any]] | None = None,
    response_model: type[BaseModel] = Verdicts,
    **kwargs: Any,
) -> BaseModel:
    return asyncio.run(ask_async(server, mode=mode, messages=messages, response_model=response_model, **kwargs))


async def ask_async(
    server: LoopbackJudge,
    *,
    mode: instructor.Mode = instructor.Mode.TOOLS,
    messages: list[dict[str, Any]] | None = None,
    response_model: type[BaseModel] = Verdicts,
    model: str = MODEL,
    api_key: str = API_KEY,
    **kwargs: Any,
) -> BaseModel:
    # max_retries=0 on litellm's side too: the openai SDK would otherwise retry 429/500/timeouts
    # itself, and a single injected fault would never surface.
    client = instructor.from_litellm(functools.partial(litellm.acompletion, max_retries=0), mode=mode)
    return await client.chat.completions.create(
        model=model,
        api_base=server.base_url,
        api_key=api_key,
        messages=messages or judge_messages(),
        response_model=response_model,
        max_retries=kwargs.pop("instructor_retries", 0),
        **kwargs,
    )


@pytest.fixture
def server() -> Any:
    with LoopbackJudge() as running:
        yield running


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON, instructor.Mode.JSON_SCHEMA, instructor.Mode.MD_JSON])
def test_answers_validate_in_every_structured_output_mode(server: LoopbackJudge, mode: instructor.Mode) -> None:
    answer = ask(server, mode=mode)

    dumped = answer.model_dump(by_alias=True)
    assert set(dumped) == set(CRITERIA)
    assert 1 <= dumped["sa-2"]["score"] <= 5
    assert "deterministic test answer" in dumped["sa-1"]["reasoning"].lower()
    assert server.request_count == 1


def test_default_policy_is_deterministic_and_follows_the_criterion_text(server: LoopbackJudge) -> None:
    first = ask(server, mode=instructor.Mode.TOOLS).model_dump(by_alias=True)
    second = ask(server, mode=instructor.Mode.JSON).model_dump(by_alias=True)
    assert first == second

    question = CriterionQuestion("x", CRITERIA["sa-2"][1], "scale", 1, 5, (), "", {})
    assert deterministic_policy(question)["score"] == first["sa-2"]["score"]


def test_requests_are_recorded_with_images_and_the_tool_is_forced(server: LoopbackJudge) -> None:
    image_url = png_data_url(gradient_image())
    ask(server, messages=judge_messages(image_url))

    [body] = server.requests
    assert body["tools"][0]["function"]["name"] == "Verdicts"
    assert body["tool_choice"]["function"]["name"] == "Verdicts"
    parts = body["messages"][-1]["content"]
    assert parts[1]["image_url"]["url"] == image_url
    server.requests.clear()  # a copy: the server's record is untouched
    assert server.request_count == 1


def test_policy_sees_each_criterion_with_its_scale_bounds_and_images() -> None:
    seen: list[CriterionQuestion] = []

    def recording_policy(question: CriterionQuestion) -> dict[str, Any]:
        seen.append(question)
        return deterministic_policy(question)

    with LoopbackJudge(policy=recording_policy) as server:
        ask(server, mode=instructor.Mode.JSON, messages=judge_messages(png_data_url(gradient_image()), png_data_url(gradient_image())))

    by_id = {question.criterion_id: question for question in seen}
    assert set(by_id) == set(CRITERIA)
    assert (by_id["sa-2"].kind, by_id["sa-2"].minimum, by_id["sa-2"].maximum) == ("scale", 1, 5)
    assert by_id["sa-1"].kind == "binary" and by_id["sa-1"].text == CRITERIA["sa-1"][1]
    assert len(by_id["sa-1"].images) == 2 and by_id["sa-1"].images[0].startswith(b"\x89PNG")
    assert by_id["sa-1"].images is by_id["sa-3"].images  # decoded once per request
    assert "Judge the generated image" in by_id["sa-1"].prompt_text


def test_response_carries_usage_and_openai_metadata(server: LoopbackJudge) -> None:
    response = asyncio.run(
        litellm.acompletion(
            model=MODEL,
            api_base=server.base_url,
            api_key=API_KEY,
            messages=judge_messages(png_data_url(gradient_image())),
            tools=[{"type": "function", "function": {"name": "Verdicts", "parameters": Verdicts.model_json_schema()}}],
        )
    )
    assert response.id.startswith("chatcmpl-")
    assert response.choices[0].finish_reason == "tool_calls"
    assert response.usage.prompt_tokens >= 85 and response.usage.completion_tokens > 0
    arguments = json.loads(response.choices[0].message.tool_calls[0].function.arguments)
    Verdicts.model_validate(arguments)


def test_synchronous_litellm_client_works_too(server: LoopbackJudge) -> None:
    client = instructor.from_litellm(litellm.completion, mode=instructor.Mode.TOOLS)
    answer = client.chat.completions.create(
        model=MODEL, api_base=server.base_url, api_key=API_KEY, messages=judge_messages(), response_model=Verdicts, max_retries=0
    )
    assert answer.model_dump(by_alias=True).keys() == CRITERIA.keys()


def test_properties_that_are_not_verdicts_get_schema_valid_fillers(server: LoopbackJudge) -> None:
    with_summary = create_model("WithSummary", __base__=Verdicts, summary=(str, Field(description="One sentence overall.")))
    answer = ask(server, mode=instructor.Mode.JSON_SCHEMA, response_model=with_summary)
    assert answer.summary == ""  # type: ignore[attr-defined]


def test_a_failing_policy_is_a_500_with_the_traceback() -> None:
    def broken_policy(question: CriterionQuestion) -> dict[str, Any]:
        raise KeyError("no answer for " + question.criterion_id)

    with LoopbackJudge(policy=broken_policy) as server, pytest.raises(InstructorRetryException) as caught:
        ask(server)
    assert isinstance(caught.value.__cause__, litellm.InternalServerError)
    assert "no answer for sa-1" in str(caught.value.__cause__)


def test_a_request_without_any_schema_is_a_400(server: LoopbackJudge) -> None:
    error = post_chat(server, {"model": "x", "messages": [{"role": "user", "content": "hello"}]})
    assert error.code == 400
    assert "no JSON schema" in json.load(error)["error"]["message"]


def test_models_endpoint_lists_the_model(server: LoopbackJudge) -> None:
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
        listing = json.load(response)
    assert listing["data"][0]["id"] == "loopback-judge"


def post_chat(server: LoopbackJudge, body: dict[str, Any]) -> urllib.error.HTTPError:
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    return caught.value


def test_http_429_has_retry_after(server: LoopbackJudge) -> None:
    server.faults.append(Fault.http_429(retry_after_s=3))
    error = post_chat(server, {"model": "x", "messages": judge_messages()})
    assert error.code == 429
    assert error.headers["Retry-After"] == "3"

    # Through litellm the header survives only on `litellm_response_headers`.
    server.faults.append(Fault.http_429(retry_after_s=0.25))
    with pytest.raises(InstructorRetryException) as caught:
        ask(server)
    assert isinstance(caught.value.__cause__, litellm.RateLimitError)
    assert caught.value.__cause__.litellm_response_headers["retry-after"] == "0.25"


def test_http_500_then_recovers(server: LoopbackJudge) -> None:
    server.faults.extend(["http_500"])
    with pytest.raises(InstructorRetryException) as caught:
        ask(server)
    assert isinstance(caught.value.__cause__, litellm.InternalServerError)
    ask(server)  # the fault applied to one request only
    assert server.request_count == 2


def test_slow_answer_times_out_the_client(server: LoopbackJudge) -> None:
    server.faults.append(Fault.slow(delay_s=10))
    started = time.perf_counter()
    with pytest.raises(InstructorRetryException) as caught:
        ask(server, timeout=0.3)
    assert isinstance(caught.value.__cause__, litellm.Timeout)
    assert time.perf_counter() - started < 3


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON, instructor.Mode.MD_JSON])
@pytest.mark.parametrize("fault", [FaultKind.malformed, FaultKind.truncated])
def test_unparseable_answers_fail_validation(server: LoopbackJudge, mode: instructor.Mode, fault: FaultKind) -> None:
    server.faults.append(fault)
    with pytest.raises(InstructorRetryException) as caught:
        ask(server, mode=mode)
    assert caught.value.n_attempts == 1
    assert isinstance(caught.value.__cause__, ValidationError)


def test_truncated_with_length_finish_reason_is_an_incomplete_output(server: LoopbackJudge) -> None:
    server.faults.append(Fault.truncated(finish_reason="length"))
    with pytest.raises(IncompleteOutputException):
        ask(server)


def test_instructor_retry_recovers_from_one_bad_answer(server: LoopbackJudge) -> None:
    server.faults.append(FaultKind.malformed)
    answer = ask(server, instructor_retries=1)
    assert answer.model_dump(by_alias=True).keys() == CRITERIA.keys()
    assert server.request_count == 2


def test_drop_criterion_names_the_missing_field(server: LoopbackJudge) -> None:
    server.faults.append(Fault.drop_criterion())
    with pytest.raises(InstructorRetryException) as caught:
        ask(server)
    error = caught.value.__cause__
    assert isinstance(error, ValidationError)
    assert [(e["type"], e["loc"]) for e in error.errors()] == [("missing", ("sa-1",))]


def test_out_of_range_breaks_the_first_criterion(server: LoopbackJudge) -> None:
    server.faults.append(Fault.out_of_range())
    with pytest.raises(InstructorRetryException) as caught:
        ask(server)
    assert [e["loc"] for e in caught.value.__cause__.errors()] == [("sa-1", "confidence")]

    scale_first = verdicts_model({"q-1": (ScaleVerdict, "Overall quality")})
    server.faults.append(Fault.out_of_range())
    with pytest.raises(InstructorRetryException) as caught:
        ask(server, response_model=scale_first)
    [error] = caught.value.__cause__.errors()
    assert error["loc"] == ("q-1", "score") and error["input"] == 10


def test_fault_rule_chooses_per_request_and_every_request_is_recorded(server: LoopbackJudge) -> None:
    server.fault_rule = lambda body, index: FaultKind.http_500 if index % 2 == 0 else None
    for _ in range(2):
        with pytest.raises(InstructorRetryException):
            ask(server)
        ask(server)
    assert server.request_count == 4


def test_64_concurrent_requests_are_served_in_parallel() -> None:
    async def many() -> list[BaseModel]:
        return await asyncio.gather(*(ask_async(server) for _ in range(64)))

    with LoopbackJudge(latency=0.5) as server:
        ask(server, mode=instructor.Mode.TOOLS)  # warm up litellm's lazy imports and client cache
        answers = asyncio.run(many())
    assert len(answers) == 64 and server.request_count == 65
    # Concurrency is shown by overlap, not by a wall-clock bound that a busy CI machine could miss.
    assert server.peak_in_flight >= 32, f"at most {server.peak_in_flight} requests overlapped"


def test_stop_does_not_wait_for_slow_requests() -> None:
    server = LoopbackJudge().start()
    server.faults.append(Fault.slow(delay_s=30))
    with pytest.raises(InstructorRetryException):
        ask(server, timeout=0.2)
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 3
    assert not server.running


# ------------------------------------------------------------------------------------------
# The offline judge


def noisy(pixels: np.ndarray, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-120, 120, size=pixels.shape)
    return np.clip(pixels + noise, 0, 255)


def offline_question(kind: str, *images: np.ndarray, text: str = "The anatomy matches the reference.") -> CriterionQuestion:
    decoded = tuple(base64.b64decode(png_data_url(image).partition(",")[2]) for image in images)
    bounds = (1, 5) if kind == "scale" else (None, None)
    return CriterionQuestion("c-1", text, kind, *bounds, decoded, "", {})  # type: ignore[arg-type]


def test_offline_similarity_is_higher_for_an_identical_image() -> None:
    reference = gradient_image()
    identical = offline_policy(offline_question("binary", reference, reference))
    different = offline_policy(offline_question("binary", reference, noisy(reference)))
    assert identical["confidence"] == pytest.approx(1.0)
    assert different["confidence"] < 0.99 < identical["confidence"]
    assert identical["satisfied"] is True
    assert "not a VLM" in identical["reasoning"]

    assert offline_policy(offline_question("scale", reference, reference))["score"] == 5
    assert offline_policy(offline_question("scale", reference, 255 - reference))["score"] < 5


def test_offline_thresholds_are_stable_and_in_range() -> None:
    thresholds = [criterion_threshold(f"criterion {n}") for n in range(50)]
    assert all(0.55 <= t <= 0.95 for t in thresholds)
    assert len(set(thresholds)) > 40
    assert criterion_threshold("same text") == criterion_threshold("same text")


def test_offline_judge_with_one_image_is_neutral() -> None:
    answer = offline_policy(offline_question("scale", gradient_image()))
    assert answer["score"] == 3
    assert "neutral" in answer["reasoning"]


def test_offline_judge_end_to_end() -> None:
    reference = gradient_image()
    server = start_offline_judge()
    try:
        same = ask(
            server,
            model=OFFLINE_JUDGE_MODEL,
            api_key=OFFLINE_JUDGE_API_KEY,
            messages=judge_messages(png_data_url(reference), png_data_url(reference)),
        )
        other = ask(server, model=OFFLINE_JUDGE_MODEL, messages=judge_messages(png_data_url(reference), png_data_url(noisy(reference))))
    finally:
        server.stop()
    same_dump, other_dump = same.model_dump(by_alias=True), other.model_dump(by_alias=True)
    assert same_dump["sa-1"]["satisfied"] is True and same_dump["sa-2"]["score"] == 5
    assert other_dump["sa-1"]["confidence"] < same_dump["sa-1"]["confidence"]
    assert server.requests[0]["model"] == "rubric-judge-offline"
