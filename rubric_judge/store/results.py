"""The results database as pandas DataFrames, for notebooks and scripts.

`open_results(path)` returns a `Results` that opens a read-only connection for each question
and closes it at once: DuckDB lets one process write a file and nobody read it meanwhile, so a
notebook holding a connection would block the next `score` into the same file.

    results = rubric_judge.open_results("rubric-judge.duckdb")
    results.leaderboard()                       # one row per run and dimension, with status and coverage
    results.sql("SELECT * FROM task_scores")    # any read-only SELECT
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True)
class Results:
    """Read-only access to one results database.

    Attributes:
        path: the DuckDB file.
    """

    path: Path

    def sql(self, query: str, params: list[Any] | None = None) -> pandas.DataFrame:
        """Run one read-only SQL statement (SELECT or EXPLAIN) and return its rows.

        Args:
            query: the statement; tables, views and macros are listed in the README.
            params: values for `?` placeholders.

        Returns:
            A DataFrame with the statement's columns.

        Raises:
            UserError: the statement is not a single SELECT, or it fails.
        """
        from rubric_judge.store.query import open_query

        with open_query(self.path, query, params=params or []) as result:
            return result.df()

    def records(self, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """`sql` as a list of dicts (SQL NULL as None), without importing pandas: for callers that
        only read a few rows, such as the CLI's end-of-run summary.

        Args:
            query: one read-only SELECT.
            params: values for `?` placeholders.

        Returns:
            One dict per row, keyed by column name.
        """
        from rubric_judge.store.query import open_query

        with open_query(self.path, query, params=params or []) as result:
            return [dict(zip(result.names, row, strict=True)) for chunk in result.chunks() for row in chunk]

    def runs(self) -> pandas.DataFrame:
        """Every run with its status (running, finished, stopped, interrupted, failed) and why."""
        return self.sql("SELECT * FROM runs ORDER BY started_at")

    def leaderboard(self, rubric: str | None = None, run_id: str | None = None) -> pandas.DataFrame:
        """Scores per run and dimension ('overall' first), as the `leaderboard` view computes them,
        with each run's `status` and coverage (`samples_scored` of `samples_total`).

        Args:
            rubric: only runs of this rubric id.
            run_id: only this run.
        """
        filters = {"rubric_id": rubric, "run_id": run_id}
        where = " AND ".join(f"{column} = ?" for column, value in filters.items() if value is not None)
        return self.sql(f"SELECT * FROM leaderboard {'WHERE ' + where if where else ''} "
                        "ORDER BY rubric_id, dimension <> 'overall', dimension, score DESC NULLS LAST, model_name",
                        [value for value in filters.values() if value is not None])

    def verdicts(self, run_id: str | None = None) -> pandas.DataFrame:
        """One row per criterion verdict (status ok | error | unscored | missing_output).

        Args:
            run_id: only this run's verdicts.
        """
        where = "WHERE run_id = ?" if run_id else ""
        return self.sql(f"SELECT * FROM verdicts {where} ORDER BY run_id, sample_id, criterion_id, replicate", [run_id] if run_id else [])

    def metrics(self, run_id: str | None = None) -> pandas.DataFrame:
        """One row per sample and metric (SSIM, PSNR, LPIPS, BERTScore), with status and detail.

        Args:
            run_id: only this run's values.
        """
        where = "WHERE run_id = ?" if run_id else ""
        return self.sql(f"SELECT * FROM metric_values {where} ORDER BY run_id, sample_id, metric", [run_id] if run_id else [])


def open_results(db: str | Path) -> Results:
    """The results database at `db`, read-only.

    Args:
        db: path of a DuckDB file written by `score` (or an importer).

    Returns:
        A `Results`; each of its methods returns a pandas DataFrame.

    Raises:
        UserError: the file does not exist, or was written by a newer version.
    """
    from rubric_judge.store.db import connect

    path = Path(db)
    connect(path, read_only=True).close()  # fail now, with the file's name, and bring it up to date
    return Results(path)
