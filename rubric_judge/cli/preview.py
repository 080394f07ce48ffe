"""`rubric-judge preview`: the exact messages one sample's judge calls would send, offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rubric_judge.judge.preview import Preview, PreviewCall

FORMATS = ("text", "json")


def command(
    rubric: Annotated[Path, typer.Argument(help="A rubric file, a directory of task rubrics, or a library rubric such as builtin:medgen/holistic-with-gt.yaml.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset manifest (JSONL, one sample per line).")],
    outputs: Annotated[Path | None, typer.Option("--outputs", help="Model outputs: a directory of <id>.png/<id>.txt files or a JSONL file (without them every output is missing, and there is no call to show).")] = None,
    sample: Annotated[str | None, typer.Option("--sample", help="The sample's id (default: the manifest's first sample).")] = None,
    call: Annotated[int | None, typer.Option("--call", help="Show only this call (1-based, in the order `score` makes them).")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="litellm model string of the judge (overrides the rubric's); `offline` = the built-in offline judge.")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of the judge's OpenAI-compatible server (part of the cache key).")] = None,
    max_image_side: Annotated[int | None, typer.Option(min=64, help="Downscale images as `score --max-image-side` would.")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Verdict cache to look the calls up in (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).")] = None,
    format: Annotated[str, typer.Option("--format", help="text | json")] = "text",
) -> None:
    """Show what the judge would be sent for one sample, without sending anything: each call's
    system prompt and user messages verbatim (images described: label, field, file, media type,
    pixels and bytes as sent, never the image data), the JSON schema of the answer and the
    structured-output mode, the cache key and whether it is cached, and the estimated tokens and cost.
    """
    from rubric_judge.errors import Location, Problem, UserError
    from rubric_judge.judge.preview import preview

    if format not in FORMATS:
        raise UserError(Problem(Location(None), f"must be text or json, not {format!r}", field="--format"))
    result = preview(rubric, data=data, outputs=outputs, sample=sample, call=call, judge=judge, api_base=api_base,
                     max_image_side=max_image_side, cache_dir=cache_dir)
    if format == "json":
        import json
        import sys

        from rubric_judge.redaction import redact

        # Written as it is, not through rich: prompts hold brackets, and the JSON must reach a pipe intact.
        sys.stdout.write(redact(json.dumps(result.to_dict(), indent=2, ensure_ascii=False)) + "\n")
        return
    _print_text(result)


def _print_text(result: Preview) -> None:
    from rich.text import Text

    from rubric_judge.cli.output import stdout

    task = f" (task rubric {result.task})" if result.task else ""
    where = f" at {result.api_base}" if result.api_base else ""
    stdout.print(Text.assemble(("Preview: ", "bold"), f"{result.rubric_id} v{result.rubric_version}{task}, sample {result.sample_id}, "
                               f"judge {result.judge_model}{where}, {result.batching}"))
    if result.missing_outputs:
        stdout.print(Text(f"The model produced no {', '.join(result.missing_outputs)} for this sample: no judge call is made; "
                          f"it is scored by missing_output: {result.missing_output_policy}.", style="yellow"))
        return
    for call in result.calls:
        _print_call(call, result.call_count)
    cached = sum(c.cached for c in result.calls)
    stdout.print(Text(f"{len(result.calls)} of {result.call_count} call(s) shown: {cached} in the verdict cache ({result.cache_dir}), "
                      f"{len(result.calls) - cached} to pay; estimated {_usd(result.cost_usd)} in all, {_usd(result.to_pay_usd)} to pay. "
                      "Tokens are estimates (litellm's tokenizer, 512-px tiles per image); nothing was sent."))


def _print_call(call: PreviewCall, count: int) -> None:
    import json

    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from rubric_judge.cli.output import stdout

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("criteria", ", ".join(call.criteria))
    facts.add_row("cache key", f"{call.cache_key} ({'cached: a run pays nothing for it' if call.cached else 'not cached'})")
    facts.add_row("estimate", f"{call.prompt_tokens:,} prompt + {call.completion_tokens:,} completion tokens, {_usd(call.cost_usd)}")
    facts.add_row("request", Text(json.dumps(_without_schema(call.request), ensure_ascii=False)))
    blocks: list = [facts]
    for message in call.messages:
        body: list = []
        for part in message.parts:
            if part.kind == "text":
                body.append(Text(part.text))  # verbatim: never read as rich markup
            else:
                label = f"{part.label!r}" if part.label else "no label"
                body.append(Text(f"[image {label}, field {part.field}, {part.file}, {part.media_type}, {part.width}x{part.height} px, "
                                 f"{part.bytes:,} bytes as sent]", style="cyan"))
        blocks.append(Panel(Group(*body), title=message.role, title_align="left", border_style="dim"))
    blocks.append(Panel(Text(json.dumps(dict(call.response_schema), indent=2, ensure_ascii=False)),
                        title=f"answer schema (sent by structured_output: {call.structured_output})", title_align="left", border_style="dim"))
    title = f"Call {call.index} of {count}: {call.group}" + (f", replicate {call.replicate}" if call.replicate else "")
    stdout.print(Panel(Group(*blocks), title=title, title_align="left"))


def _usd(value: float | None) -> str:
    return "unknown cost (no price in litellm's map)" if value is None else f"${value:,.4f}"


def _without_schema(request) -> dict:
    """The request's fields, with the answer schema inside `tools` / `response_format` named
    rather than repeated: it is printed in full below (`--format json` keeps everything)."""
    shown = dict(request)
    if "tools" in shown:
        shown["tools"] = [f"function {t.get('function', {}).get('name')} (parameters: the answer schema below)" for t in shown["tools"]]
    format_ = shown.get("response_format")
    if isinstance(format_, dict) and "json_schema" in format_:
        shown["response_format"] = {"type": format_.get("type"), "json_schema": "the answer schema below"}
    return shown
