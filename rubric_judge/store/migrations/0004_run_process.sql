-- Migration 4: which process writes a run. A writer holds DuckDB's exclusive lock on the file
-- for the whole run, so a `running` run seen by any other process belongs to a process that
-- died (kill -9, power loss); the next process to open the file marks it `interrupted`.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS writer_pid INTEGER;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS writer_host VARCHAR;
-- Why a run that did not finish stopped (disk full, judge unreachable, process died), in words.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS status_detail VARCHAR;
