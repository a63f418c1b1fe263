"""`halluscope report` and `halluscope compare`: from existing run folders, no model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from . import _options as opt


def _folders(values: list[Path]) -> list[Path]:
    from ..compare import read_run

    for v in values:
        if (v / "diagnosis.json").is_file():  # a `halluscope diagnose` folder
            continue
        if not (v / "results.json").is_file() or "methods" not in json.loads((v / "results.json").read_text()):
            try:
                read_run(v)
            except ValueError as e:
                raise typer.BadParameter(str(e)) from e
    return values


def report(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", callback=_folders,
        help="run folders: a demo's --output, folders of `halluscope eval` results, or of `halluscope diagnose`")],
    output: Annotated[Path, typer.Option(metavar="FILE", help="the HTML file to write")] = Path("report.html"),
) -> None:
    """Build the self-contained report.html of existing run folders: benchmark tables, profile
    checks where the world's POPE and CHAIR are there, the paired comparison of the runs (against
    the first, or greedy and sample), the gallery wherever the images are reachable."""
    from ..report.html import build_report

    if output.is_dir():
        raise opt.bad("--output", f"{str(output)!r} is a folder; pass a file name such as {output / 'report.html'}")
    output.parent.mkdir(parents=True, exist_ok=True)
    figures = build_report(run_dirs, output)
    output.with_suffix(".figures.json").write_text(json.dumps(figures, indent=1))
    typer.echo(f"wrote {output} and {output.with_suffix('.figures.json')}")


def compare(
    run_a: Annotated[Path, typer.Argument(metavar="RUN_A", callback=lambda v: _folders([v])[0])],
    run_b: Annotated[Path, typer.Argument(metavar="RUN_B", callback=lambda v: _folders([v])[0])],
    json_out: Annotated[Path | None, typer.Option("--json", metavar="FILE", help="also write the comparison here")
                        ] = None,
) -> None:
    """A - B on every benchmark both runs hold, over the images both answered: each metric's
    difference with its 95 % paired-bootstrap interval (the demo's statistics)."""
    from ..compare import compare_runs

    try:
        result = compare_runs(run_a, run_b)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="RUN_A/RUN_B") from e
    typer.echo(f"A = {run_a} ({result['method_a']}), B = {run_b} ({result['method_b']}); "
               "* the 95 % interval leaves out 0")
    for bench, rows in result["benchmarks"].items():
        typer.echo(f"{bench}:")
        for metric, d in rows.items():
            typer.echo(f"  {metric:<22} A {100 * d['a']:6.1f}  B {100 * d['b']:6.1f}  A-B {100 * d['value']:+6.1f} "
                       f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]{' *' if d['significant'] else ''}"
                       f"  ({d['n_images']} images)")
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=1))


def register(app: typer.Typer) -> None:
    app.command(cls=opt.command())(report)
    app.command(cls=opt.command(output=False))(compare)
