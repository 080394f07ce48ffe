"""`rubric-judge serve`: rubric rewards over HTTP for RL trainers (OpenRLHF, verl, TRL)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    rubric: Annotated[list[str], typer.Argument(help="Rubric files, directories of task rubrics, or library rubrics (builtin:...), loaded once.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind; 127.0.0.1 (this machine only) unless you mean to expose it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0 = any free port, printed at start).")] = 8000,
    judge: Annotated[str | None, typer.Option("--judge", help="litellm model string of the judge (default: each rubric's); `offline` = the built-in offline judge (not a VLM).")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of an OpenAI-compatible judge server (vLLM, Ollama, ...).")] = None,
    transport: Annotated[str, typer.Option("--transport", help="auto | litellm | direct, as for `score`.")] = "auto",
    concurrency: Annotated[int, typer.Option(min=1, max=4096, help="Judge calls in flight at once, across all requests.")] = 64,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.1, help="Requests-per-minute limit on the judge.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds before one judge request is abandoned and retried.")] = 120.0,
    deadline: Annotated[float, typer.Option(min=0.1, help="Seconds from a request's arrival after which an item still waiting for the judge gets the fallback reward (OpenRLHF's client waits 180 s).")] = 150.0,
    fallback_reward: Annotated[float, typer.Option("--fallback-reward", help="Reward of an item that cannot be scored (status and error say why).")] = 0.0,
    db: Annotated[Path | None, typer.Option("--db", help="Results database the scored items are logged to as serve runs (default: $RUBRIC_JUDGE_DB, else ./rubric-judge.duckdb).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Verdict cache (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).")] = None,
    cache: Annotated[str, typer.Option("--cache", help="read-write | read-only | refresh | off")] = "read-write",
    allow_dir: Annotated[list[Path] | None, typer.Option("--allow-dir", help="A directory whose images items may name by path (repeatable); otherwise images must be sent inline as data URIs.")] = None,
    token_env: Annotated[str | None, typer.Option("--token-env", help="Name of an environment variable holding a bearer token that requests must send (Authorization: Bearer ...).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="The serve runs' model name on the leaderboard (default: serve-<start time>).")] = None,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", min=0.001, help="Largest request body accepted, in MiB.")] = 64.0,
    max_image_mb: Annotated[float, typer.Option("--max-image-mb", min=0.001, help="Largest inline image accepted, in MiB.")] = 20.0,
    max_image_side: Annotated[int | None, typer.Option(min=64, help="Downscale judged images whose longer side exceeds this.")] = None,
) -> None:
    """Serve rubric rewards over HTTP: POST /get_reward (OpenRLHF), POST /v1/score, GET /health, GET /metrics.

    Items go through the same planner, verdict cache, retries and scoring rules as `score`, and
    every scored item is logged to --db as a serve run (read it with `leaderboard`, `query` or
    `report` once the server has stopped). An item that cannot be scored gets --fallback-reward
    with a status and an error; the rest of its batch is scored.
    """
    import os

    from rubric_judge.cli.output import stderr
    from rubric_judge.errors import Location, Problem, UserError
    from rubric_judge.redaction import redact_logging, register_secret
    from rubric_judge.store.db import default_db_path

    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise UserError(Problem(Location(None), f"the environment variable {token_env} is not set or empty", field="token_env",
                                    fix=f"export {token_env}=<a long random token>, or leave out --token-env"))
        register_secret(token)
    redact_logging()  # uvicorn's and the library's log records pass through redaction
    from rubric_judge.cli.app import imports_frozen

    # The modules and the loaded rubrics live as long as the server: frozen, the collector's full
    # passes skip them. Unfrozen, each full pass walked 55-100k objects for 30-85 ms, a stall that
    # landed inside a burst of requests (a second burst of 256 reached 65-68% instead of 72%).
    with imports_frozen():
        import uvicorn

        # Imported by the first request otherwise (the judge's request building and its HTTP
        # client, the results database): imported here, they are frozen with the rest.
        import rubric_judge.judge.messages
        import rubric_judge.judge.structured
        import rubric_judge.store.db
        from rubric_judge.serve.app import create_app
        from rubric_judge.serve.service import RewardService

        service = RewardService(rubric, judge=judge, api_base=api_base, transport=transport, concurrency=concurrency, rpm=rpm, timeout=timeout,
                                deadline=deadline, db=db or default_db_path(), cache_dir=cache_dir, cache=cache, allow_dirs=allow_dir or (),
                                fallback_reward=fallback_reward, model=model, max_image_bytes=int(max_image_mb * 1024 * 1024),
                                max_image_side=max_image_side)
        if service.transport == "direct":
            import rubric_judge.judge.httpclient  # noqa: F401
        app = create_app(service, token=token, max_body_bytes=int(max_body_mb * 1024 * 1024))

    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        stderr.print(f"[yellow]warning:[/] serving on {host} without a token: anyone who can reach it can spend your judge budget (add --token-env)")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    stderr.print(f"rubric-judge serve: rubrics {', '.join(sorted(service.rubrics))}; judge {service.judge_model} ({service.transport}); "
                 f"logging to {service.db} as model {service.model!r}")
    _announce_port(server)
    server.run()


def _announce_port(server) -> None:
    """Print the bound address once uvicorn listens (the port is chosen by the OS for --port 0)."""
    from rubric_judge.cli.output import stderr

    startup = server.startup

    async def startup_and_announce(sockets=None):
        await startup(sockets=sockets)
        for listener in server.servers:
            for sock in listener.sockets:
                address = sock.getsockname()
                stderr.print(f"listening on http://{address[0]}:{address[1]} (POST /get_reward, POST /v1/score, GET /health, GET /metrics)")

    server.startup = startup_and_announce
