"""verl's custom reward function: rubric rewards from `rubric-judge serve` (or in process).

verl's reward managers call `compute_score(data_source, solution_str, ground_truth, extra_info)`
for each response and accept async functions; the result here is a dict whose `score` is the
reward (verl logs the other keys as reward_extra_info). The sample's label (the rubric, task and
inputs, see `rubric_judge.integrations.client.label_item`) is `extra_info["rubric_label"]` when
the dataset has it, else `ground_truth` (a JSON object, as the label of /get_reward).

    custom_reward_function:
      path: <site-packages>/rubric_judge/integrations/verl.py
      name: compute_score          # or compute_score_sync for the naive reward manager
    # with RUBRIC_JUDGE_SERVE_URL=http://127.0.0.1:8000 in the workers' environment
"""

from __future__ import annotations

from typing import Any

from rubric_judge.integrations.client import RewardClient, label_item

_client: RewardClient | None = None


def _shared_client() -> RewardClient:
    global _client
    if _client is None:
        _client = RewardClient()
    return _client


def _item(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None) -> dict[str, Any]:
    extra = extra_info if isinstance(extra_info, dict) else {}
    label = extra.get("rubric_label", ground_truth)
    item = label_item(label, solution_str, ident=str(extra["index"]) if "index" in extra else None)
    item.setdefault("rubric", data_source)
    return item


def _result(result: dict[str, Any]) -> dict[str, Any]:
    return {"score": result["reward"], "rubric_status": result["status"], "rubric_cached": float(bool(result["cached"]))}


async def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                        client: RewardClient | None = None, **kwargs: Any) -> dict[str, Any]:
    """The rubric reward of one verl response.

    Args:
        data_source: the dataset's data_source; used as the rubric id when the label names none.
        solution_str: the decoded response.
        ground_truth: the label (JSON object text or dict) unless extra_info has `rubric_label`.
        extra_info: verl's per-sample extra info.
        client: a `RewardClient` (default: one shared client configured from the environment).

    Returns:
        {"score": reward, "rubric_status": ok | partial | <fallback reason>, "rubric_cached": 0.0 | 1.0}.
    """
    [result] = await (client or _shared_client()).score([_item(data_source, solution_str, ground_truth, extra_info)])
    return _result(result)


def compute_score_sync(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                       client: RewardClient | None = None, **kwargs: Any) -> dict[str, Any]:
    """`compute_score` for verl's synchronous reward managers."""
    [result] = (client or _shared_client()).score_sync([_item(data_source, solution_str, ground_truth, extra_info)])
    return _result(result)
