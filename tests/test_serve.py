"""`rubric-judge serve`: the reward server over real HTTP, judging through the loopback judge.

The ASGI app runs in-process (starlette's TestClient runs its lifespan) and, for the socket
path, under uvicorn on a free port; scored items land in a real DuckDB file."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path

import duckdb
import pytest
from conftest import mixed_policy
from starlette.testclient import TestClient

from rubric_judge.serve.app import create_app
from rubric_judge.serve.service import RewardService
from rubric_judge.testing.loopback import Fault

ROOT = Path(__file__).resolve().parents[1]


ILLUGEN = ROOT / "examples" / "illugenbench"
MEDGEN_RUBRIC = "builtin:medgen/holistic-with-gt.yaml"
MEDGEN = "medgen/holistic-with-gt"
JUDGE = "openai/test-judge"


def vqa_label(instruction: str = "What abnormality is visible, and on which side?", **extra) -> dict:
    return {"rubric": MEDGEN, "inputs": {"category": "VQA", "instruction": instruction, "answer": "A left pleural effusion."}, **extra}


def make_service(tmp_path: Path, judge_server, **options) -> RewardService:
    judge_server.policy = mixed_policy
    options.setdefault("deadline", 30.0)
    return RewardService([MEDGEN_RUBRIC, ILLUGEN / "tasks"], judge=JUDGE, api_base=judge_server.base_url, transport="direct",
                         db=tmp_path / "serve.duckdb", cache_dir=tmp_path / "cache", allow_dirs=[ILLUGEN], model="policy-step", **options)


def illugen_item(ident: str, reference, generated) -> dict:
    return {"id": ident, "rubric": "illugenbench", "task": "lung-nodule", "inputs": {"prompt": "A lung with a nodule.", "reference_image": reference},
            "outputs": {"generated_image": generated}}


def test_one_bad_item_never_fails_the_batch(tmp_path: Path, judge_server):
    png = (ILLUGEN / "outputs" / "good-model" / "lung-nodule.png").read_bytes()
    items = [
        {"id": "good", **vqa_label(), "outputs": {"response": "A left-sided pleural effusion."}},
        {"id": "malformed", "rubric": MEDGEN, "inputs": "not an object"},
        {"id": "unknown", "rubric": "no-such-rubric", "inputs": {}},
        illugen_item("missing-image", "references/no-such-file.png", "outputs/good-model/lung-nodule.png"),
        illugen_item("escape", "../../pyproject.toml", "outputs/good-model/lung-nodule.png"),
        illugen_item("inline", "references/lung-nodule.png", "data:image/png;base64," + base64.b64encode(png).decode()),
        illugen_item("not-an-image", "references/lung-nodule.png", "data:image/png;base64," + base64.b64encode(b"hello").decode()),
        7,
    ]
    with TestClient(create_app(make_service(tmp_path, judge_server, fallback_reward=-1.0))) as client:
        response = client.post("/v1/score", json={"items": items})
    assert response.status_code == 200
    results = {r["id"]: r for r in response.json()["results"]}
    assert [results[i]["status"] for i in ("good", "malformed", "unknown", "missing-image", "escape", "inline", "not-an-image", "item-7")] == \
        ["ok", "invalid_item", "unknown_rubric", "bad_image", "bad_image", "ok", "bad_image", "invalid_item"]
    for ident in ("malformed", "unknown", "missing-image", "escape", "not-an-image", "item-7"):
        assert results[ident]["reward"] == -1.0 and results[ident]["error"]
    # id_policy: every `*-1` criterion met, and scientific_accuracy-2 -> lung-nodule's weighted points.
    assert results["inline"]["reward"] == pytest.approx((5 + 3 + 3 + 5) / 16)
    assert {c["id"]: c["met"] for c in results["inline"]["criteria"]}["semantic_alignment-2"] is False
    assert results["good"]["reward"] is not None and results["good"]["criteria"]


def test_a_judge_that_never_answers_gives_the_fallback_at_the_deadline(tmp_path: Path, judge_server):
    with TestClient(create_app(make_service(tmp_path, judge_server, deadline=1.0))) as client:
        warm = client.post("/v1/score", json={"items": [{"id": "cached", **vqa_label(), "response": "effusion"}]}).json()["results"][0]
        assert warm["status"] == "ok"
        judge_server.fault_rule = lambda body, index: Fault.slow(delay_s=30)
        results = client.post("/v1/score", json={"items": [{"id": "cached", **vqa_label(), "response": "effusion"},
                                                             {"id": "slow", **vqa_label(), "response": "something new"}]}).json()["results"]
    assert results[0]["status"] == "ok" and results[0]["cached"] and results[0]["reward"] == warm["reward"]
    assert results[1]["status"] == "deadline" and results[1]["reward"] == 0.0 and "deadline" in results[1]["error"]


def test_openrlhf_request_shape(tmp_path: Path, judge_server):
    # As OpenRLHF's remote reward client sends it: request_api_wrapper(url, {"query": queries, "prompts": prompts, "labels": labels}),
    # then reads "rewards" (and "scores", "extra_logs", whose per-key values it concatenates per sample).
    prompts = ["<|user|>What abnormality is visible?<|assistant|>", "<|user|>Describe the scan.<|assistant|>"]
    queries = [prompts[0] + " A left-sided pleural effusion.", prompts[1] + " Normal."]
    labels = [json.dumps(vqa_label()), "a plain reference answer, not a label"]
    with TestClient(create_app(make_service(tmp_path, judge_server))) as client:
        body = client.post("/get_reward", json={"query": queries, "prompts": prompts, "labels": labels}).json()
    assert set(body) == {"rewards", "scores", "extra_logs"}
    assert len(body["rewards"]) == len(body["scores"]) == 2
    assert body["rewards"][0] > 0 and body["rewards"][1] == 0.0
    assert body["extra_logs"] == {"rubric_fallback": [0.0, 1.0], "rubric_cached": [0.0, 0.0]}
    # The judge saw the response, without the prompt.
    sent = json.dumps(judge_server.requests[-1])
    assert "A left-sided pleural effusion." in sent and "<|assistant|>" not in sent


def test_scored_items_are_logged_as_a_serve_run(tmp_path: Path, judge_server):
    service = make_service(tmp_path, judge_server)
    with TestClient(create_app(service)) as client:
        for step in range(2):
            client.post("/v1/score", json={"items": [{"id": "p1", **vqa_label(), "response": f"answer {step}"}]})
    con = duckdb.connect(str(tmp_path / "serve.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT model_name, status, samples_scored, dimension FROM leaderboard WHERE dimension = 'overall'").fetchall()
        samples = con.execute("SELECT count(*) FROM samples").fetchone()[0]
    finally:
        con.close()
    assert rows == [("policy-step", "finished", 2, "overall")]
    assert samples == 2  # the same item id twice (two rollouts) is two samples


def test_one_batch_of_two_rubrics_logs_each_item_to_its_own_run(tmp_path: Path, judge_server):
    """The log writes a whole batch at once (one write per run, not per item): items of two
    rubrics in one batch each land in their rubric's run, with their own verdicts and the
    task score their reward was."""
    items = [{"id": f"v{i}", **vqa_label(f"Question {i}: what abnormality is visible?"), "response": f"answer {i}"} for i in range(6)]
    items += [illugen_item(f"g{i}", "references/lung-nodule.png", "outputs/good-model/lung-nodule.png") for i in range(2)]
    with TestClient(create_app(make_service(tmp_path, judge_server))) as client:
        results = client.post("/v1/score", json={"items": items}).json()["results"]
    assert [r["status"] for r in results] == ["ok"] * 8
    con = duckdb.connect(str(tmp_path / "serve.duckdb"), read_only=True)
    try:
        runs = dict(con.execute("SELECT rubric_id, count(*) FROM samples JOIN runs USING (run_id) GROUP BY rubric_id").fetchall())
        scores = dict(con.execute("SELECT split_part(sample_id, '#', 1), score FROM task_scores").fetchall())
        verdicts = con.execute("SELECT count(*) FROM verdicts").fetchone()[0]
    finally:
        con.close()
    assert runs == {MEDGEN: 6, "illugenbench": 2}
    assert scores == {r["id"]: pytest.approx(r["reward"]) for r in results}
    assert verdicts == sum(len(r["criteria"]) for r in results)


def test_a_database_that_cannot_be_written_never_stops_the_rewards(tmp_path: Path, judge_server):
    """The log opens the database when the server starts; when it cannot (here its folder is a
    file), items are still scored and every failed write is counted, never raised."""
    (tmp_path / "not-a-dir").write_text("a file")
    service = make_service(tmp_path, judge_server)
    service.db = tmp_path / "not-a-dir" / "serve.duckdb"

    async def score():
        async with service:
            results = await service.score([{"id": "p1", **vqa_label(), "response": "A left pleural effusion."}])
            return results, service._log

    results, log = asyncio.run(score())
    assert [r.status for r in results] == ["ok"]
    assert log.errors >= 1 and log.written == 0


def test_metrics_and_health(tmp_path: Path, judge_server):
    with TestClient(create_app(make_service(tmp_path, judge_server))) as client:
        for _ in range(2):
            client.post("/v1/score", json={"items": [{"id": "x", **vqa_label(), "response": "effusion"}]})
        assert client.get("/health").json()["status"] == "ok"
        text = client.get("/metrics").text
    assert 'rubric_judge_serve_items_total{status="ok"} 2' in text
    assert "rubric_judge_serve_cache_hits_total 1" in text
    assert 'rubric_judge_serve_item_latency_seconds{quantile="0.5"}' in text


def test_token_and_body_limit(tmp_path: Path, judge_server):
    app = create_app(make_service(tmp_path, judge_server), token="s3cret-token-value", max_body_bytes=2000)
    with TestClient(app) as client:
        assert client.post("/v1/score", json={"items": []}).status_code == 401
        assert client.post("/v1/score", json={"items": []}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret-token-value"}
        assert client.post("/v1/score", json={"items": []}, headers=auth).json() == {"results": []}
        assert client.post("/v1/score", content=b"x" * 5000, headers=auth).status_code == 413
        assert client.post("/v1/score", content=b"{not json", headers=auth).status_code == 400
        assert client.get("/health").status_code == 200
        assert "s3cret-token-value" not in client.get("/metrics", headers=auth).text


@pytest.fixture
def socket_server(tmp_path: Path, judge_server):
    """The app under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(make_service(tmp_path, judge_server)), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_real_socket_with_the_verl_and_trl_clients(socket_server: str):
    from rubric_judge.integrations.client import RewardClient
    from rubric_judge.integrations.trl import RubricReward
    from rubric_judge.integrations.verl import compute_score, compute_score_sync

    client = RewardClient(socket_server)
    # verl: compute_score(data_source, solution_str, ground_truth, extra_info=None), as its reward managers call it.
    result = asyncio.run(compute_score(MEDGEN, "A left-sided pleural effusion.", json.dumps(vqa_label()), extra_info={"index": 3}, client=client))
    assert result["rubric_status"] == "ok" and result["score"] > 0
    again = compute_score_sync(MEDGEN, "A left-sided pleural effusion.", json.dumps(vqa_label()), extra_info={"index": 3}, client=client)
    assert again["score"] == result["score"] and again["rubric_cached"] == 1.0
    # TRL GRPOTrainer: reward_func(prompts=..., completions=..., **dataset columns) -> list[float | None]
    reward = RubricReward(socket_server, none_on_fallback=True)
    rewards = reward(prompts=[[{"role": "user", "content": "What is visible?"}]] * 2,
                     completions=[[{"role": "assistant", "content": "A left-sided pleural effusion."}], [{"role": "assistant", "content": "x"}]],
                     rubric_label=[json.dumps(vqa_label()), "{not json"], completion_ids=[[1], [2]], trainer_state=None)
    assert rewards[0] == result["score"] and rewards[1] is None
    assert reward.last_results[1]["status"] == "invalid_item"
    client.close()
    reward.client.close()


@pytest.mark.parametrize("slice_s", [0.0, 60.0])
def test_text_items_are_planned_in_slices_each_sent_before_the_next(tmp_path: Path, judge_server, monkeypatch: pytest.MonkeyPatch, slice_s: float):
    """Text items are planned in slices of planning time, each slice's judge requests sent before
    the next slice is planned: with no time per slice, each request leaves a few items after its
    own was planned (the call passes the judging loop's queues, a loop turn each, while one item
    a turn is planned); with a slice longer than the burst, all 24 are planned before the first
    request leaves, as when every item was planned where it arrived."""
    import rubric_judge.serve.service as service_module
    from rubric_judge.judge.httpclient import ConnectionPool

    planned: list[str] = []
    planned_at_request: list[int] = []
    compile_sample, post = service_module.compile_sample, ConnectionPool.post

    def counting_compile(rubric, sample, target):
        planned.append(sample.id)
        return compile_sample(rubric, sample, target)

    async def noting_post(self, *args, **kwargs):
        planned_at_request.append(len(planned))
        return await post(self, *args, **kwargs)

    monkeypatch.setattr(service_module, "compile_sample", counting_compile)
    monkeypatch.setattr(service_module._TextPlanner, "SLICE_S", slice_s)
    monkeypatch.setattr(ConnectionPool, "post", noting_post)
    items = [{"id": f"rollout-{i}", **vqa_label(), "response": f"answer {i}"} for i in range(24)]

    async def burst():
        async with make_service(tmp_path, judge_server) as service:
            return await service.score(items)

    results = asyncio.run(burst())
    assert [r.status for r in results] == ["ok"] * 24 and len(planned) == 24 and len(planned_at_request) == 24
    if slice_s:
        assert planned_at_request == [24] * 24
    else:
        assert all(count <= sent + 4 for sent, count in enumerate(planned_at_request)), planned_at_request


def test_an_item_whose_request_gave_up_before_planning_is_never_judged(monkeypatch: pytest.MonkeyPatch):
    """A request cancelled (the trainer disconnected) while its item waits to be planned sends
    no judge call for it; closing the planner cancels the items still waiting."""
    import rubric_judge.serve.service as service_module

    planned: list[str] = []
    submitted: list[str] = []

    class Plan:
        def __init__(self, ident: str):
            self.calls = [ident]

    class Judging:
        def submit(self, call):
            submitted.append(call)
            return asyncio.get_running_loop().create_future()

    def fake_compile(rubric, sample, target):
        planned.append(sample)
        return Plan(sample)

    monkeypatch.setattr(service_module, "compile_sample", fake_compile)

    async def scenario():
        planner = service_module._TextPlanner(Judging())
        first, gone, third = (asyncio.ensure_future(planner.plan(None, ident, None)) for ident in ("first", "gone", "third"))
        await asyncio.sleep(0)  # all three wait in the queue; the planner has not run yet
        gone.cancel()
        plan, futures = await first
        await third
        assert plan.calls == ["first"] and len(futures) == 1
        # One more item, queued and not yet planned when the planner closes: cancelled, never planned.
        waiting = asyncio.ensure_future(planner.plan(None, "late", None))
        await asyncio.sleep(0)
        await planner.close()
        await asyncio.gather(waiting, return_exceptions=True)
        assert waiting.cancelled()

    asyncio.run(scenario())
    assert planned == submitted == ["first", "third"]
