"""The records of `score --batch` that the pipeline and its progress display share: one
provider batch as the ledger keeps it, and the progress event about the run's batches. Kept
apart from judge/batch.py so that importing the pipeline does not import the batch client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rubric_judge.redaction import redact

TERMINAL = ("completed", "failed", "expired", "cancelled")
# The state of a batch recorded before it is created (its `client_token` set, its id a
# placeholder): a command killed between the provider's create and the ledger's insert leaves
# this, and the next command finds the batch at the provider instead of creating another.
SUBMITTING = "submitting"
INTENT_PREFIX = "intent-"


@dataclass
class BatchRecord:
    """One submitted batch, as the ledger keeps it (the provider's object, less what is not needed)."""

    batch_id: str
    input_file_id: str
    custom_ids: tuple[str, ...]
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    request_count: int = 0
    completed_count: int = 0
    failed_count: int = 0
    errors: str | None = None  # batch-level errors (a failed batch)
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    client_token: str | None = None  # ours, sent as the batch's metadata where the provider keeps it

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def intended(self) -> bool:
        """Recorded before its create call returned: the provider may or may not hold it."""
        return self.status == SUBMITTING

    @classmethod
    def intent(cls, token: str, input_file_id: str, custom_ids: tuple[str, ...]) -> BatchRecord:
        """The record written before a batch is created (see SUBMITTING)."""
        return cls(INTENT_PREFIX + token, input_file_id, custom_ids, SUBMITTING, request_count=len(custom_ids), client_token=token)

    def update(self, batch: dict[str, Any]) -> None:
        """Take the state of the provider's batch object."""
        counts = batch.get("request_counts") or {}
        self.status = str(batch.get("status") or self.status)
        self.output_file_id = batch.get("output_file_id") or self.output_file_id
        self.error_file_id = batch.get("error_file_id") or self.error_file_id
        self.request_count = int(counts.get("total") or self.request_count or len(self.custom_ids))
        self.completed_count = int(counts.get("completed") or 0)
        self.failed_count = int(counts.get("failed") or 0)
        errors = batch.get("errors")
        if errors:
            data = errors.get("data") if isinstance(errors, dict) else errors
            messages = [f"{e.get('code')}: {e.get('message')}" if isinstance(e, dict) else str(e) for e in (data or [errors])]
            self.errors = redact("; ".join(messages))[:1000]
        self.updated_at = datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class BatchUpdate:
    """A progress event: the run's batches after a submission or a poll."""

    batches: tuple[BatchRecord, ...]
    submitted: tuple[str, ...] = ()  # ids submitted by this event
