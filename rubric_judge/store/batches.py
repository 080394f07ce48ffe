"""A run's provider batches in the results database (table `batches`, migrations 10 and 11).

`score --batch` records each batch before it asks the provider to create it (an intent, with
our client token), then as created and in every state it is polled in; the next run of the same command reads the batches whose answers were not yet stored
(`collected_at` NULL) and polls them instead of submitting their calls again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rubric_judge.judge.batch_records import BatchRecord
from rubric_judge.store.db import ResultStore

_COLUMNS = ("run_id", "batch_id", "api_base", "input_file_id", "output_file_id", "error_file_id", "status", "request_count",
            "completed_count", "failed_count", "errors", "submitted_at", "updated_at", "collected_at", "custom_ids",
            "client_token")


class BatchLedgerDB:
    """`judge.batch.BatchLedger` over a run's rows of `batches`.

    Args:
        store: the open results database.
        run_id: the run the batches belong to (a re-run of the same command has the same id).
        api_base: the server the batches were submitted to (no credentials); a batch of another
            server is not polled here.
    """

    def __init__(self, store: ResultStore, run_id: str, api_base: str | None):
        self.store, self.run_id, self.api_base = store, run_id, api_base

    def open_batches(self) -> list[BatchRecord]:
        rows = self.store.con.execute(
            "SELECT batch_id, input_file_id, custom_ids, status, output_file_id, error_file_id, request_count, completed_count, failed_count, "
            "errors, submitted_at, updated_at, client_token FROM batches WHERE run_id = ? AND api_base IS NOT DISTINCT FROM ? AND collected_at IS NULL "
            "ORDER BY submitted_at, batch_id", [self.run_id, self.api_base]).fetchall()
        return [BatchRecord(row[0], row[1], tuple(row[2]), row[3], row[4], row[5], row[6] or 0, row[7] or 0, row[8] or 0, row[9], row[10], row[11],
                            row[12])
                for row in rows]

    def save(self, record: BatchRecord) -> None:
        values = [self.run_id, record.batch_id, self.api_base, record.input_file_id, record.output_file_id, record.error_file_id, record.status,
                  record.request_count, record.completed_count, record.failed_count, record.errors, record.submitted_at, record.updated_at,
                  None, list(record.custom_ids), record.client_token]
        with self.store._writing("record a batch"), self.store._transaction():
            # By token too: the intent recorded before the create call becomes the created batch.
            self.store.con.execute("DELETE FROM batches WHERE run_id = ? AND (batch_id = ? OR (client_token IS NOT NULL AND client_token = ?))",
                                   [self.run_id, record.batch_id, record.client_token])
            self.store.con.execute(f"INSERT INTO batches ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", values)

    def forget(self, record: BatchRecord) -> None:
        """Drop an intent whose batch the provider never created (its calls are submitted again)."""
        with self.store._writing("forget a batch that was never created"):
            self.store.con.execute("DELETE FROM batches WHERE run_id = ? AND batch_id = ?", [self.run_id, record.batch_id])

    def known_batch_ids(self) -> set[str]:
        """Every batch id this database holds for any run (an orphan is never adopted twice)."""
        return {row[0] for row in self.store.con.execute("SELECT batch_id FROM batches").fetchall()}

    def mark_collected(self, batch_ids: list[str]) -> None:
        """These batches' answers are in the run's rows: later runs no longer poll them."""
        if not batch_ids:
            return
        with self.store._writing("record collected batches"):
            self.store.con.execute("UPDATE batches SET collected_at = ? WHERE run_id = ? AND batch_id IN (SELECT unnest(?))",
                                   [datetime.now(UTC).replace(tzinfo=None), self.run_id, batch_ids])
