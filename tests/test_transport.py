"""The two transports: which one `auto` picks, that they send the same request, and how the direct
client reports what goes wrong on the wire."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from rubric_judge.cache.verdicts import CacheMode, VerdictCache
from rubric_judge.errors import UserError
from rubric_judge.judge.executor import Executor, ExecutorSettings, Outcome, Progress
from rubric_judge.judge.transport import _proxy_for, _served_name, resolve_transport
from rubric_judge.planning.compile import JudgeTarget, build_plan
from rubric_judge.planning.job import load_job
from rubric_judge.rubrics.schema import VerdictSpec
from rubric_judge.testing.loopback import Fault, deterministic_policy

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
JUDGE = "openai/test-judge"


@pytest.mark.parametrize(("requested", "model", "api_base", "expected"), [
    ("auto", "openai/qwen-vl", "http://127.0.0.1:8000/v1", "direct"),
    ("auto", "hosted_vllm/Qwen/Qwen2.5-VL-7B", "http://gpu-box:8000/v1", "direct"),
    ("auto", "gpt-4.1", "http://127.0.0.1:8000/v1", "direct"),  # no prefix: litellm reads it as openai
    ("auto", "openai/gpt-4.1", None, "litellm"),  # a hosted provider: litellm maps its parameters
    ("auto", "anthropic/claude-sonnet-4", "http://proxy:4000", "litellm"),
    ("litellm", "openai/qwen-vl", "http://127.0.0.1:8000/v1", "litellm"),
    ("direct", "openai/qwen-vl", "http://127.0.0.1:8000/v1", "direct"),
])
def test_auto_picks_direct_only_for_an_openai_compatible_server(requested, model, api_base, expected) -> None:
    assert resolve_transport(requested, model, api_base) == expected


@pytest.mark.parametrize(("requested", "model", "api_base", "message"), [
    ("direct", "openai/gpt-4.1", None, "needs the URL"),
    ("direct", "anthropic/claude-sonnet-4", "http://proxy:4000", "'anthropic' model"),
    ("fast", "openai/x", None, "unknown transport 'fast'"),
])
def test_a_transport_that_cannot_work_is_a_user_error(requested, model, api_base, message) -> None:
    with pytest.raises(UserError, match=message) as caught:
        resolve_transport(requested, model, api_base)
    assert caught.value.problems[0].fix  # says what to do instead


def test_score_refuses_an_unknown_transport_with_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from rubric_judge.cli.app import main; main()", "score", str(EXAMPLE / "tasks"),
         "--data", str(EXAMPLE / "manifest.jsonl"), "--outputs", str(EXAMPLE / "outputs" / "good-model"),
         "--model", "m", "--judge", JUDGE, "--transport", "fast", "--db", str(tmp_path / "r.duckdb"),
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--transport" in result.stderr and "unknown transport 'fast'" in result.stderr and "fix:" in result.stderr
    assert not (tmp_path / "r.duckdb").exists()


def test_the_served_model_name_drops_only_litellms_provider_prefix() -> None:
    assert _served_name("openai/Qwen/Qwen2.5-VL-7B") == "Qwen/Qwen2.5-VL-7B"
    assert _served_name("hosted_vllm/llava") == "llava"
    assert _served_name("gpt-4.1") == "gpt-4.1"


def test_proxies_come_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _proxy_for("http://gpu-box:8000/v1/chat/completions") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert _proxy_for("http://gpu-box:8000/v1/chat/completions") == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "gpu-box")
    assert _proxy_for("http://gpu-box:8000/v1/chat/completions") is None
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")  # the lower-case name counts too
    assert _proxy_for("http://gpu-box:8000/v1/chat/completions") == "http://proxy.example:3128"


def example_calls(structured_output: str) -> list:
    job = load_job(EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model")
    plan = build_plan(job.rubrics, job.samples, JudgeTarget(JUDGE, None))
    return [dataclasses.replace(call, structured_output=structured_output) for call in plan.calls[:2]]


def judge(calls: list, server_url: str, transport: str, tmp: Path, **settings) -> list[Outcome]:
    settings = {"concurrency": 2, **settings}
    executor = Executor(VerdictCache(tmp / "cache", CacheMode.off),
                        ExecutorSettings(api_base=server_url, api_key="sk-transport-test", transport=transport, **settings))
    return executor.run(calls, Progress())


@pytest.mark.parametrize("structured_output", ["tools", "json_schema", "json", "md_json"])
def test_both_transports_send_the_same_request_and_read_the_same_answer(judge_server, tmp_path: Path, structured_output: str) -> None:
    calls = example_calls(structured_output)
    bodies, answers = {}, {}
    for transport in ("litellm", "direct"):
        judge_server.clear_requests()
        outcomes = judge(calls, judge_server.base_url, transport, tmp_path)
        assert [o.status for o in outcomes] == ["ok"] * len(calls), [o.error for o in outcomes]
        bodies[transport] = sorted(judge_server.requests, key=json.dumps)
        answers[transport] = {o.call.cache_key: (o.answer, o.prompt_tokens, o.completion_tokens) for o in outcomes}
    # The cache key does not name the transport, so a cached answer must not depend on it.
    assert bodies["direct"] == bodies["litellm"]
    assert answers["direct"] == answers["litellm"]
    assert bodies["direct"][0]["model"] == "test-judge"


def example_calls_with_a_scale(structured_output: str) -> list:
    """Three calls: two binary (the example rubric) and one scale call (its verdict replaced)."""
    calls = example_calls(structured_output)
    job = load_job(EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model")
    extra = build_plan(job.rubrics, job.samples, JudgeTarget(JUDGE, None)).calls[2]
    scale = dataclasses.replace(extra, structured_output=structured_output, verdict=VerdictSpec(kind="scale", min=1, max=10),
                                cache_key=extra.cache_key + "-scale")
    return [*calls, scale]


@pytest.mark.parametrize("structured_output", ["tools", "json_schema", "json", "md_json"])
def test_re_asks_after_invalid_answers_are_the_same_on_both_transports(judge_server, tmp_path: Path, structured_output: str) -> None:
    """Answers that miss a criterion, are not JSON, or fall outside the scale are re-asked with
    the same messages by instructor (litellm) and by the direct client; one call never gets a
    valid answer and ends unscored, with the same error and token totals on both."""
    calls = example_calls_with_a_scale(structured_output)
    # One call at a time, so faults meet the same asks on both transports: call 1 is re-asked
    # twice, call 2 never answers validly (1 + 2 asks), call 3 (the scale) is re-asked once.
    faults = [Fault.drop_criterion(), Fault.malformed(), None,
              Fault.drop_criterion(), Fault.malformed(), Fault.drop_criterion(),
              Fault.out_of_range(), None]
    judge_server.policy = deterministic_policy  # answers scale criteria too
    bodies, results, errors = {}, {}, {}
    for transport in ("litellm", "direct"):
        judge_server.clear_requests()
        judge_server.faults.extend(faults)  # None: answer normally
        outcomes = judge(calls, judge_server.base_url, transport, tmp_path, concurrency=1)
        assert not judge_server.faults
        # The server numbers its tool calls across the whole test; re-asks echo those ids back.
        bodies[transport] = json.loads(re.sub(r'"call_[0-9a-f]+"', '"call_ID"', json.dumps(judge_server.requests)))
        results[transport] = [(o.status, o.answer, o.attempts, o.prompt_tokens, o.completion_tokens) for o in outcomes]
        errors[transport] = outcomes[1].error
    assert [r[0] for r in results["direct"]] == ["ok", "unscored", "ok"]
    assert len(bodies["direct"]) == len(faults)
    assert bodies["direct"] == bodies["litellm"]
    assert results["direct"] == results["litellm"]
    # instructor's message also lists every failed attempt; both end with the last validation error.
    for error in errors.values():
        assert error.startswith("invalid answer after 3 attempt(s): ") and "Field required" in error
    # The re-ask carries the answer and the validation error back to the judge.
    reask = bodies["direct"][1]["messages"]
    assert len(reask) > len(bodies["direct"][0]["messages"]) and "JudgeVerdicts" in json.dumps(reask[-1])


async def _serve_once(handler, run) -> None:
    """Serve `handler` on 127.0.0.1 in this event loop while `run(url)` runs."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)  # do not wait long for a stalled handler
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        await run(f"http://127.0.0.1:{port}/v1")
    finally:
        await runner.cleanup()


def direct_outcome(tmp: Path, handler, **settings) -> tuple[Outcome, int]:
    """One example call through the direct transport against `handler`; (outcome, requests seen)."""
    seen = []
    result: list[Outcome] = []

    async def counting(request: web.Request) -> web.StreamResponse:
        seen.append(await request.read())
        return await handler(request)

    async def run(url: str) -> None:
        executor = Executor(VerdictCache(tmp / "cache", CacheMode.off),
                            ExecutorSettings(concurrency=1, api_base=url, api_key="sk-x", transport="direct", backoff_base_s=0.01, **settings))
        result.extend(await executor.run_async(example_calls("tools")[:1], Progress()))

    asyncio.run(_serve_once(counting, run))
    return result[0], len(seen)


def test_a_refused_key_is_a_fatal_error_with_the_servers_message(tmp_path: Path) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, status=401)

    outcome, requests = direct_outcome(tmp_path, refuse)
    assert (outcome.status, requests) == ("error", 1)  # not retried: asking again cannot help
    assert "HTTP 401" in outcome.error and "Incorrect API key provided" in outcome.error


def test_an_answer_that_is_not_json_is_retried_then_an_error(tmp_path: Path) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>502 from a proxy</html>", content_type="text/html")

    outcome, requests = direct_outcome(tmp_path, garbage, max_attempts=3)
    assert (outcome.status, outcome.attempts, requests) == ("error", 3, 3)
    assert "not JSON" in outcome.error and "502 from a proxy" in outcome.error


def test_a_server_that_leaves_out_optional_fields_still_works(tmp_path: Path, judge_server) -> None:
    # Some OpenAI-compatible servers omit `created`, `object` and `usage`, which the SDK's types require.
    async def terse(request: web.Request) -> web.Response:
        body = await request.json()
        full = await asyncio.to_thread(_ask_loopback, judge_server.base_url, body)
        for key in ("created", "object", "usage", "system_fingerprint"):
            full.pop(key, None)
        return web.json_response(full)

    outcome, requests = direct_outcome(tmp_path, terse)
    assert (outcome.status, requests) == ("ok", 1), outcome.error
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (0, 0)


def _ask_loopback(base_url: str, body: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(base_url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_server_that_is_not_there_is_a_connection_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcomes = judge(example_calls("tools")[:1], f"http://127.0.0.1:{port}/v1", "direct", tmp_path, max_attempts=2, backoff_base_s=0.01)
    assert (outcomes[0].status, outcomes[0].attempts) == ("error", 2)
    assert "no usable answer" in outcomes[0].error and "connect" in outcomes[0].error.lower()


def test_the_offline_judge_runs_through_litellm_by_default() -> None:
    # The demo's offline judge exists to run the whole real path, litellm included.
    import duckdb
    from report_fixtures import example_db

    with duckdb.connect(str(example_db()), read_only=True) as db:
        rows = db.execute("SELECT DISTINCT config->>'transport', config->>'offline_judge' FROM runs").fetchall()
    assert rows == [("litellm", "true")]


def test_a_server_slower_than_the_timeout_is_reported_as_timed_out(tmp_path: Path) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    outcome, requests = direct_outcome(tmp_path, stall, timeout_s=0.3, max_attempts=2)
    assert (outcome.status, outcome.attempts, requests, outcome.error) == ("error", 2, 2, "timed out")


def test_request_bodies_are_byte_for_byte_what_json_dumps_writes(tmp_path: Path) -> None:
    """encode_json copies the images' data URLs in instead of having json.dumps scan them; the
    bytes are the same as json.dumps(ensure_ascii=False, compact) in UTF-8, for the bodies the
    direct transport builds and for text that json must escape, and when a string of the input
    holds the stand-in the plain encoding is used."""
    from rubric_judge.judge.messages import build_messages
    from rubric_judge.judge.transport import _MARKER, encode_json
    from rubric_judge.planning.images import JSONVerbatim

    def reference(value) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    calls = example_calls("tools")
    for call in calls:
        messages = build_messages(call)
        urls = [part["image_url"]["url"] for message in messages if isinstance(message["content"], list)
                for part in message["content"] if part.get("type") == "image_url"]
        assert urls and all(isinstance(url, JSONVerbatim) for url in urls)  # the fast path is the one taken
        body = {"model": "m", "messages": messages, "temperature": 0.0, "tools": [{"type": "function"}], "seed": None, "n": True}
        assert encode_json(body) == reference(body)
    url = JSONVerbatim("data:image/png;base64," + "QUJD" * 5000)
    awkward = {"text": 'é "quoted" \\ back\tslash \x00 ☃', "parts": [url, {"url": url}, ["nested", url]], "n": 1.5}
    assert encode_json(awkward) == reference(awkward)
    collision = {"a": _MARKER, "b": url}
    assert encode_json(collision) == reference(collision)


def test_a_proxied_judge_url_goes_through_the_proxy(judge_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set for the judge's URL, the direct transport sends through the proxy (over
    aiohttp, which speaks proxies; the lean client does not). The loopback judge stands in for the
    proxy: it receives the absolute-form requests for a host that does not resolve, and answers."""
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", judge_server.base_url.rsplit("/v1", 1)[0])
    outcomes = judge(example_calls("tools"), "http://judge.invalid/v1", "direct", tmp_path)
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.error for o in outcomes]
    assert judge_server.request_count == 2
