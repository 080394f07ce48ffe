"""A TRL `GRPOTrainer` reward function: rubric rewards from `rubric-judge serve` (or in process).

GRPOTrainer calls each reward function with `prompts`, `completions` (strings, or for
conversational data lists of messages) and every dataset column as keyword arguments, and
expects a list of floats (None where the function does not apply). The dataset's
`label_column` (default "rubric_label") holds each sample's label: the rubric, task and inputs
(see `rubric_judge.integrations.client.label_item`).

    from rubric_judge.integrations.trl import RubricReward
    trainer = GRPOTrainer(model=..., reward_funcs=[RubricReward(url="http://127.0.0.1:8000")], ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rubric_judge.integrations.client import RewardClient, label_item


class RubricReward:
    """Callable reward function for TRL; one request per batch of completions.

    Args:
        url, token: the server (default: $RUBRIC_JUDGE_SERVE_URL, $RUBRIC_JUDGE_SERVE_TOKEN);
            no URL = score in process (`service_options` go to `RewardService`).
        label_column: the dataset column holding each sample's label.
        none_on_fallback: answer None (TRL: "not applicable") instead of the fallback reward
            for items that could not be scored.
    """

    def __init__(self, url: str | None = None, token: str | None = None, label_column: str = "rubric_label",
                 none_on_fallback: bool = False, **service_options: Any):
        self.client = RewardClient(url, token, **service_options)
        self.label_column = label_column
        self.none_on_fallback = none_on_fallback
        self.__name__ = "rubric_reward"  # TRL names the reward's logged column after __name__
        self.last_results: list[dict[str, Any]] = []

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        labels = kwargs.get(self.label_column)
        if labels is None:
            raise KeyError(f"the dataset has no {self.label_column!r} column with the rubric labels (RubricReward(label_column=...))")
        items = [label_item(label, _text(completion), ident=str(index)) for index, (label, completion) in enumerate(zip(labels, completions, strict=True))]
        self.last_results = self.client.score_sync(items)
        fallback = ("ok", "partial")
        return [None if self.none_on_fallback and r["status"] not in fallback else r["reward"] for r in self.last_results]


def _text(completion: Any) -> str:
    """A completion's text: a string, or a conversation's last message content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # content parts
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return str(completion)
