"""`rubric-judge score`: judge a model's outputs against a rubric and store everything in DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OFFLINE = "offline"


def command(
    rubric: Annotated[Path, typer.Argument(help="A rubric file, a directory of task rubrics, or a library rubric such as builtin:medgen/holistic-with-gt.yaml.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset manifest (JSONL, one sample per line).")],
    outputs: Annotated[Path, typer.Option("--outputs", help="Model outputs: a directory of <id>.png/<id>.txt files or a JSONL file.")],
    model: Annotated[str, typer.Option("--model", help="Name of the model under test, as it should appear on the leaderboard.")],
    judge: Annotated[str | None, typer.Option("--judge", help="litellm model string of the judge (overrides the rubric's); `offline` = the built-in offline judge (not a VLM).")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of an OpenAI-compatible server (vLLM, Ollama, ...).")] = None,
    transport: Annotated[str, typer.Option("--transport", help="How requests reach the judge: `litellm` (any provider litellm knows), `direct` (rubric-judge's own HTTP client for an OpenAI-compatible --api-base; about a quarter of litellm's client CPU per call) or `auto`: direct when --api-base is given with an openai/ or hosted_vllm/ model, else litellm.")] = "auto",
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Judge calls in flight at once.")] = 16,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.1, help="Requests-per-minute limit.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds before one judge request is abandoned and retried.")] = 120.0,
    db: Annotated[Path | None, typer.Option("--db", help="Results database (default: $RUBRIC_JUDGE_DB, else ./rubric-judge.duckdb).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Verdict cache (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).")] = None,
    cache: Annotated[str, typer.Option("--cache", help="read-write | read-only | refresh | off")] = "read-write",
    max_cost: Annotated[float | None, typer.Option("--max-cost", min=0, help="Refuse to start if the estimate exceeds this many USD; stop when spend reaches it.")] = None,
    replicates: Annotated[int, typer.Option(min=1, help="Judge every call this many times (replicate index is part of the cache key).")] = 1,
    max_image_side: Annotated[int | None, typer.Option(min=64, help="Downscale images whose longer side exceeds this (default: send originals).")] = None,
    device: Annotated[str, typer.Option(help="Where metrics run: auto (cuda, then mps, then cpu) | cpu | cuda | mps.")] = "auto",
    max_unreachable: Annotated[int, typer.Option("--max-unreachable", min=0, help="Stop the run (exit 1) after this many attempts in a row could not connect to the judge at all; 0 = never.")] = 20,
) -> None:
    """Judge model outputs against a rubric: cached, resumable, every call and verdict in DuckDB.

    Re-running the same command is free (verdicts come from the cache) and replaces the run's
    rows; after a crash, run it again to resume.
    """
    from rubric_judge.cache.store import CacheMode, default_cache_dir
    from rubric_judge.errors import UserError
    from rubric_judge.run import ScoreOptions, score
    from rubric_judge.store.db import default_db_path

    try:
        cache_mode = CacheMode(cache)
    except ValueError:
        raise UserError(f"--cache must be one of {', '.join(m.value for m in CacheMode)}, not {cache!r}") from None
    options = ScoreOptions(
        rubric=rubric, data=data, outputs=outputs, model_name=model, judge=judge, offline=judge == OFFLINE,
        api_base=api_base, transport=transport, concurrency=concurrency, rpm=rpm, timeout_s=timeout, db=db or default_db_path(),
        cache_dir=cache_dir or default_cache_dir(), cache_mode=cache_mode, max_cost_usd=max_cost,
        replicates=replicates, max_image_side=max_image_side, device=device, max_unreachable=max_unreachable,
    )
    raise typer.Exit(score(options))
