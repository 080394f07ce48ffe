-- Migration 10: provider batches submitted by `score --batch`, one row per batch.
--
-- Kept so that a command killed while it waits resumes polling instead of submitting the same
-- calls again: a run's batches whose answers were not yet written (collected_at NULL) are
-- polled, downloaded and stored by the next run of the same command. `custom_ids` are the
-- verdict-cache keys of the calls in the batch. Not one of the tables a re-run replaces.
CREATE TABLE IF NOT EXISTS batches (
    run_id VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    api_base VARCHAR,
    input_file_id VARCHAR,
    output_file_id VARCHAR,
    error_file_id VARCHAR,
    status VARCHAR NOT NULL,          -- the provider's: validating | in_progress | finalizing | completed | failed | expired | cancelling | cancelled
    request_count INTEGER,
    completed_count INTEGER,
    failed_count INTEGER,
    errors VARCHAR,                   -- the provider's batch-level errors (a failed batch), redacted
    submitted_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    collected_at TIMESTAMP,           -- when its answers were written to the run's rows
    custom_ids VARCHAR[] NOT NULL
);
