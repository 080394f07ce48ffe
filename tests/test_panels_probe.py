"""Judge panels and the swap-images position-bias probe, end to end through real HTTP to the
loopback judge: the panel's combined verdicts, its costs, its cache, and a planted position bias
measured as the flip rate between a run and its probe run."""

from __future__ import annotations

import hashlib
import io
import itertools
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from rubric_judge.errors import UserError
from rubric_judge.run import score
from rubric_judge.store.panel import MemberVerdict, combine
from rubric_judge.testing.loopback import CriterionQuestion, LoopbackJudge

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "illugenbench"
TASKS, MANIFEST, GOOD = EXAMPLE / "tasks", EXAMPLE / "manifest.jsonl", EXAMPLE / "outputs" / "good-model"
CRITERIA = [c["id"] for path in sorted(TASKS.glob("*.yaml")) for c in yaml.safe_load(path.read_text())["criteria"]]
CALLS = sum(len({c["dimension"] for c in yaml.safe_load(p.read_text())["criteria"]}) for p in TASKS.glob("*.yaml"))  # per_dimension


# Three judges with known, different verdicts on every criterion id.
def says_a(criterion_id: str) -> bool:
    return criterion_id.endswith("-1")


def says_b(criterion_id: str) -> bool:
    return criterion_id.endswith(("-1", "-2"))


def says_c(criterion_id: str) -> bool:
    return hashlib.sha256(criterion_id.encode()).digest()[0] % 2 == 0


JUDGES = {"openai/panel-judge-a": says_a, "openai/panel-judge-b": says_b, "openai/panel-judge-c": says_c}
PRICES = {"openai/panel-judge-a": (1e-6, 2e-6), "openai/panel-judge-b": (3e-6, 1e-6), "openai/panel-judge-c": (5e-7, 5e-7)}


def by_model(question: CriterionQuestion) -> dict[str, Any]:
    """One server answering as whichever judge the request names."""
    model = question.request.get("model", "")
    says = next(says for name, says in JUDGES.items() if model in (name, name.removeprefix("openai/")))
    return {"reasoning": f"{model} on {question.criterion_id}", "satisfied": says(question.criterion_id), "confidence": 0.8}


def brightness(image: bytes) -> float:
    from PIL import Image, ImageStat

    with Image.open(io.BytesIO(image)) as opened:
        return ImageStat.Stat(opened.convert("L")).mean[0]


def position_biased(question: CriterionQuestion) -> dict[str, Any]:
    """A planted position bias: on `*-1` criteria, met whenever the FIRST image shown is the
    brighter one, whatever the images are; every other criterion is answered from its id alone."""
    if question.criterion_id.endswith("-1"):
        first, second = question.images
        met = brightness(first) > brightness(second)
    else:
        met = question.criterion_id.endswith("-3")
    return {"reasoning": "biased", "satisfied": met, "confidence": 0.7}


def unbiased(question: CriterionQuestion) -> dict[str, Any]:
    return {"reasoning": "fair", "satisfied": question.criterion_id.endswith("-1"), "confidence": 0.7}


def register_prices() -> None:
    from rubric_judge.llm import litellm_module

    litellm_module().register_model({
        name: {"input_cost_per_token": prompt, "output_cost_per_token": completion, "litellm_provider": "openai", "mode": "chat"}
        for name, (prompt, completion) in PRICES.items()
    })


def run(server: LoopbackJudge, tmp: Path, **extra: Any):
    return score(TASKS, data=MANIFEST, outputs=GOOD, model="good-model", api_base=server.base_url, db=tmp / "results.duckdb",
                 cache_dir=tmp / "cache", concurrency=4, timeout=10.0, **extra)


def query(db: Path, sql: str, params: list[Any] = ()) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def test_a_panel_of_three_judges_gives_majority_verdicts_adds_costs_and_reruns_from_cache(tmp_path: Path):
    register_prices()
    with LoopbackJudge(policy=by_model) as server:
        result = run(server, tmp_path, judge=list(JUDGES), panel="majority")
        first_requests = server.request_count
        server.clear_requests()
        again = run(server, tmp_path, judge=list(JUDGES), panel="majority")
        assert server.request_count == 0  # every member's calls come from the cache

    db = tmp_path / "results.duckdb"
    assert result.status == "finished" and result.exit_code == 0
    assert result.judge_model == "panel:majority(openai/panel-judge-a,openai/panel-judge-b,openai/panel-judge-c)"
    assert first_requests == 3 * CALLS == result.calls == sum(m.calls for m in result.members)

    # Each member is a run of its own, linked to the panel, with its own calls and cache keys.
    members = query(db, "SELECT judge_model, run_id FROM runs WHERE role = 'panel_member' AND parent_run_id = ? ORDER BY judge_model", [result.run_id])
    assert [judge for judge, _ in members] == sorted(JUDGES)
    assert query(db, "SELECT role FROM runs WHERE run_id = ?", [result.run_id]) == [("panel",)]
    keys = query(db, "SELECT count(DISTINCT cache_key), count(*) FROM judge_calls WHERE run_id IN (SELECT run_id FROM runs WHERE parent_run_id = ?)",
                 [result.run_id])
    assert keys == [(3 * CALLS, 3 * CALLS)]
    for judge, run_id in members:  # each member's stored verdicts are that judge's answers
        stored = dict(query(db, "SELECT criterion_id, met FROM verdicts WHERE run_id = ?", [run_id]))
        assert stored == {c: JUDGES[judge](c) for c in CRITERIA}

    # The panel's verdicts: met when at least two of the three members say met.
    panel = dict(query(db, "SELECT criterion_id, met FROM verdicts WHERE run_id = ? AND status = 'ok'", [result.run_id]))
    expected = {c: sum(says(c) for says in JUDGES.values()) >= 2 for c in CRITERIA}
    assert panel == expected
    assert len(set(expected.values())) == 2  # the test distinguishes met from not met
    assert any(says_a(c) != expected[c] for c in CRITERIA)  # and is not just one member's answer

    # Costs: each member paid its own price; the panel's cost is their sum.
    assert all(m.cost_usd > 0 and not m.cost_unknown for m in result.members)
    for member in result.members:
        # The rows are the cached re-run's: it paid nothing, and keeps what each answer cost.
        paid, original = query(db, "SELECT sum(cost_usd), sum(original_cost_usd) FROM judge_calls WHERE run_id = ?", [member.run_id])[0]
        assert paid == 0 and original == pytest.approx(member.cost_usd)
    assert len({round(m.cost_usd, 12) for m in result.members}) == 3  # different prices: a sum, not a multiple
    assert result.cost_usd == pytest.approx(sum(m.cost_usd for m in result.members))

    # The re-run: nothing paid, the same panel run and verdicts.
    assert again.run_id == result.run_id and again.cache_hits == again.calls == 3 * CALLS and again.cost_usd == 0
    assert dict(query(db, "SELECT criterion_id, met FROM verdicts WHERE run_id = ? AND status = 'ok'", [again.run_id])) == expected

    # The leaderboard shows the panel as one judge; its members are their own runs, not extra rows.
    judges = {judge for (judge,) in query(db, "SELECT DISTINCT judge_model FROM leaderboard")}
    assert judges == {result.judge_model}

    # agree shows the members against each other: each pair's flip rate is the share of criteria they answer differently.
    from rubric_judge.store.agreement import agree

    rows = agree(db, runs=[result.run_id], resamples=50, store=False)
    flips = rows[(rows["statistic"] == "flip_rate") & (rows["group"] == "overall")]
    by_pair = {frozenset((a, b)): v for a, b, v in zip(flips["run_id"], flips["other_run_id"], flips["value"], strict=True)}
    ids = dict(members)
    for (a, says_a_), (b, says_b_) in itertools.combinations(sorted(JUDGES.items()), 2):
        expected_flip = sum(says_a_(c) != says_b_(c) for c in CRITERIA) / len(CRITERIA)
        assert by_pair[frozenset((ids[a], ids[b]))] == pytest.approx(expected_flip)


@pytest.mark.parametrize(("rule", "kind", "votes", "expected"), [
    ("majority", "binary", [True, True, False], ("ok", True, None)),
    ("majority", "binary", [True, False, None], ("unscored", None, None)),  # a tie among the members that answered
    ("majority", "binary", [None, None, None], ("unscored", None, None)),  # nobody answered validly
    ("mean", "binary", [True, False], ("ok", True, None)),  # share of met 0.5 >= 0.5
    ("mean", "binary", [True, False, False], ("ok", False, None)),
    ("min", "binary", [True, True, None], ("ok", True, None)),  # the unscored member is left out
    ("min", "binary", [True, True, False], ("ok", False, None)),
    ("majority", "scale", [2, 9, 7], ("ok", None, 7.0)),
    ("majority", "scale", [2, 9, None, 8], ("ok", None, 8.0)),
    ("majority", "scale", [2, 8], ("ok", None, 5.0)),
    ("mean", "scale", [2, 9, 7], ("ok", None, 6.0)),
    ("min", "scale", [2, 9, None], ("ok", None, 2.0)),
])
def test_panel_rules_ties_and_unscored_members(rule: str, kind: str, votes: list, expected: tuple):
    members = [MemberVerdict(f"j{i}", "unscored" if v is None else "ok", v if kind == "binary" else None,
                             v if kind == "scale" else None) for i, v in enumerate(votes)]
    verdict = combine(rule, kind, members)
    assert (verdict.status, verdict.met, verdict.score) == expected


def test_panel_options_are_checked_before_anything_runs(tmp_path: Path):
    with pytest.raises(UserError, match="how their verdicts combine"):
        score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge=["a", "b"], db=tmp_path / "x.duckdb")
    with pytest.raises(UserError, match="two or more judges"):
        score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge="a", panel="majority", db=tmp_path / "x.duckdb")
    with pytest.raises(UserError, match="must be one of majority, mean, min"):
        score(TASKS, data=MANIFEST, outputs=GOOD, model="m", judge=["a", "b"], panel="vote", db=tmp_path / "x.duckdb")
    assert not (tmp_path / "x.duckdb").exists()


def flip_rate(db: Path, run_id: str) -> tuple[float, int, str]:
    """(share of verdicts that differ between the run and its swap-images probe, verdicts compared, the probe's run id)."""
    (probe_id,) = query(db, "SELECT run_id FROM runs WHERE role = 'probe' AND probe = 'swap-images' AND parent_run_id = ?", [run_id])[0]
    rate, compared = query(db, """
        SELECT avg((o.met <> p.met)::INTEGER), count(*)
        FROM verdicts o JOIN verdicts p USING (sample_id, criterion_id, replicate)
        WHERE o.run_id = ? AND p.run_id = ? AND o.status = 'ok' AND p.status = 'ok'""", [run_id, probe_id])[0]
    return rate, compared, probe_id


def test_a_planted_position_bias_shows_as_the_flip_rate_of_the_swap_images_probe(tmp_path: Path):
    # Precondition of the planted rate: in every sample one image is strictly brighter, so a
    # judge that favours the first image answers `*-1` criteria the other way once swapped.
    references = {p.stem: p for p in (EXAMPLE / "references").glob("*.png")}
    for output in GOOD.glob("*.png"):
        assert brightness(references[output.stem].read_bytes()) != brightness(output.read_bytes())
    planted = sum(c.endswith("-1") for c in CRITERIA) / len(CRITERIA)
    assert 0 < planted < 1

    with LoopbackJudge(policy=position_biased) as server:
        result = run(server, tmp_path, judge="openai/biased-judge", probe="swap-images")
        assert server.request_count == 2 * CALLS  # the probe's calls are new requests: their messages differ
        # The probe's requests really show the images the other way round, labels moving with them.
        texts = ["\n".join(part["text"] for part in body["messages"][-1]["content"] if part["type"] == "text") for body in server.requests]
        assert sum(t.index("Image 1: Reference") < t.index("Image 2: Generated") for t in texts if "Image 1: Reference" in t) == CALLS
        assert sum("Image 1: Generated" in t and "Image 2: Reference" in t for t in texts) == CALLS
    assert result.exit_code == 0 and result.probe is not None and result.probe.status == "finished"
    assert result.probe.cache_hits == 0 and result.probe.calls == CALLS

    rate, compared, probe_id = flip_rate(tmp_path / "results.duckdb", result.run_id)
    assert probe_id == result.probe.run_id != result.run_id
    assert compared == len(CRITERIA)
    assert rate == pytest.approx(planted)
    # The probe is stored next to the run, not on the leaderboard.
    assert query(tmp_path / "results.duckdb", "SELECT DISTINCT run_id FROM leaderboard") == [(result.run_id,)]


def test_an_unbiased_judge_flips_nothing_and_a_probe_rerun_is_free(tmp_path: Path):
    with LoopbackJudge(policy=unbiased) as server:
        result = run(server, tmp_path, judge="openai/fair-judge", probe="swap-images")
        server.clear_requests()
        again = run(server, tmp_path, judge="openai/fair-judge", probe="swap-images")
        assert server.request_count == 0
    rate, compared, probe_id = flip_rate(tmp_path / "results.duckdb", result.run_id)
    assert (rate, compared) == (0, len(CRITERIA))
    assert again.probe is not None and again.probe.run_id == probe_id and again.probe.cache_hits == CALLS


def test_a_prompt_that_names_images_by_position_is_refused_by_the_probe(tmp_path: Path):
    from rubric_judge.rubrics.loader import LIBRARY

    base = yaml.safe_load((Path(LIBRARY) / "illugenbench" / "base.yaml").read_text())
    base["prompt"] = "The first image is the reference; judge the second image.\n" + base["prompt"]
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "base.yaml").write_text(yaml.safe_dump(base))
    for path in TASKS.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc["extends"] = "base.yaml"
        (tasks / path.name).write_text(yaml.safe_dump(doc))
    with LoopbackJudge(policy=unbiased) as server:
        with pytest.raises(UserError, match=re.escape("names an image by its position ('first image')")) as raised:
            score(tasks, data=MANIFEST, outputs=GOOD, model="m", judge="openai/fair-judge", api_base=server.base_url,
                  probe="swap-images", db=tmp_path / "x.duckdb", cache_dir=tmp_path / "cache")
        assert server.request_count == 0
    assert raised.value.problems[0].field == "prompt"
    assert not (tmp_path / "x.duckdb").exists()
    shutil.rmtree(tasks)
