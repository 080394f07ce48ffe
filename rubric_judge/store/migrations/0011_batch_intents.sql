-- Migration 11: a batch is recorded before the provider is asked to create it.
--
-- `client_token` is ours (sent as the batch's metadata where the provider keeps metadata); a
-- row in status `submitting` is such an intent. A command killed between the provider's create
-- and the row of the created batch leaves the intent, and the next run finds the batch at the
-- provider (by token or input file; Anthropic: by creation time and request count) instead of
-- submitting the same calls twice.
ALTER TABLE batches ADD COLUMN IF NOT EXISTS client_token VARCHAR;
