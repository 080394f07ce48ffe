"""`rubric-judge weights`: which metric weights are present, where they are looked for, and
`--download` to fetch the missing ones (the only command that downloads; scoring never does)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    rubrics: Annotated[list[str] | None, typer.Argument(help="Rubric files (or builtin:...) whose metrics to check; default: LPIPS on AlexNet and PubMedBERT, MedGEN-Bench's.", show_default=False)] = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch the missing weights that can be downloaded (AlexNet into $TORCH_HOME, hub models into the Hugging Face cache).")] = False,
) -> None:
    """List the metric weights (LPIPS trunk and linear layers, BERTScore models): present or absent, and where each is looked for."""
    from rubric_judge.cli.output import stdout
    from rubric_judge.metrics.weights import WeightsDownloadError, weight_entries
    from rubric_judge.metrics.weights import download as fetch

    lpips_nets, models = _needed(rubrics) if rubrics else (["alex"], None)
    entries = weight_entries(lpips_nets, models)
    if not entries:
        stdout.print("These rubrics use no metric that needs weights (SSIM and PSNR need none).", markup=False)
        return
    for entry in entries:
        mark = "[green]present[/]" if entry.present else "[red]absent[/] "
        stdout.print(f"{mark}  {entry.name}  (for {entry.used_by})")
        stdout.print(f"          at: {entry.location}", markup=False)
        stdout.print(f"          looked for in: {entry.looked}", markup=False)
        if entry.how_to_get:
            stdout.print(f"          to get it: {entry.how_to_get}", markup=False)
    missing = [e for e in entries if not e.present]
    if not download:
        if missing:
            stdout.print(f"{len(missing)} of {len(entries)} absent; metrics that need them are reported as not computed (scoring never downloads).", markup=False)
        return
    failed = 0
    for entry in missing:
        if not entry.downloadable:
            stdout.print(f"cannot download {entry.name}: {entry.how_to_get}", markup=False)
            failed += 1
            continue
        stdout.print(f"downloading {entry.name} ...", markup=False)
        try:
            where = fetch(entry)
        except WeightsDownloadError as exc:
            stdout.print(f"[red]failed[/]: {exc}", highlight=False)
            failed += 1
            continue
        stdout.print(f"[green]done[/]: {where}", highlight=False)
    if not missing:
        stdout.print("Nothing to download: every weight is present.", markup=False)
    if failed:
        raise typer.Exit(1)


def _needed(rubrics: list[str]) -> tuple[list[str], list[str]]:
    """The LPIPS nets and BERTScore models the rubrics' metrics use."""
    from rubric_judge.metrics.text import DEFAULT_BERTSCORE_MODEL
    from rubric_judge.rubrics.loader import load_rubric_set
    from rubric_judge.rubrics.schema import MetricName

    nets: list[str] = []
    models: list[str] = []
    for name in rubrics:
        for rubric in load_rubric_set(name if name.startswith("builtin:") else Path(name)):
            for spec in rubric.metrics:
                if spec.metric is MetricName.lpips:
                    nets.append(spec.model or "alex")
                elif spec.metric is MetricName.bertscore:
                    models.append(spec.model or DEFAULT_BERTSCORE_MODEL)
    return list(dict.fromkeys(nets)), list(dict.fromkeys(models))
