"""`halluscope correct`: post-hoc correction of a finished run's captions (and `eval --correct`'s options)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from . import _options as opt

CORRECT_HELP = ("post-hoc correction of the captions: PIPELINE[:VALIDATOR], pipelines woodpecker, logiccheck; "
                "validators self (the model's own answers, default), oracle (the world's truth), detector")
CORRECT_ARGS_HELP = ("correction settings, e.g. threshold=0.4,fix=false,detector=google/owlv2-base-patch16-ensemble "
                     "(`halluscope.correction.WoodpeckerConfig.help()` lists them)")


def spec_option(value: str | None) -> str | None:
    """--correct: a pipeline the registry knows, with a known validator."""
    if value is None:
        return None
    from ..correction import parse_spec

    try:
        parse_spec(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    return value


def correct_config(spec: str, text: str | None, option: str = "--correct-args") -> dict[str, Any]:
    """The pipeline's config fields from `option`'s k=v text, checked by building the config once."""
    from .. import kv
    from ..correction import PIPELINES, parse_spec

    name, validator = parse_spec(spec)
    raw = opt.kv_args(text, option)
    if "validator" in raw:
        raise opt.bad(option, "the validator is named by --correct (woodpecker:oracle); leave validator= out")
    cls = PIPELINES[name]
    try:
        values = kv.config_kwargs(cls, raw)
        cls(**{"validator": validator, **values})
    except (TypeError, ValueError) as e:
        raise opt.bad(option, e) from e
    return values


def run_correction(run: Path, spec: str, config: dict[str, Any], adapter, limit: int | None) -> None:
    from ..correction import correct_run, summary

    try:
        results = correct_run(run, adapter, spec, limit=limit, **config)
    except ValueError as e:
        raise opt.bad("--run", e) from e
    for r in results.values():
        typer.echo(json.dumps(summary(r), indent=1))


def correct(
    run: Annotated[Path, typer.Option(metavar="DIR", help="a run folder of `halluscope eval` (world-chair or chair)")],
    spec: Annotated[str, typer.Option("--correct", metavar="PIPELINE[:VALIDATOR]", callback=spec_option,
                                      help=CORRECT_HELP)] = "woodpecker:self",
    correct_args: Annotated[str | None, typer.Option(metavar="K=V,...", help=CORRECT_ARGS_HELP)] = None,
    model: Annotated[str | None, typer.Option(metavar=opt.MODEL, help="the model that answers the self-check "
                                                                      "(default: the run's own)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="correct only the first K captions of each task")] = None,
) -> None:
    """Correct a finished run's captions (Woodpecker-style): extract each caption's claims, ask about each,
    rewrite the refuted ones. Writes <task>.corrected.<pipeline>-<validator>.jsonl (one line per caption:
    original, claims, evidence, edits) and <task>.correction.<...>.json (per-stage scores on the world);
    resumable."""
    from ..compare import read_run

    try:
        tasks = read_run(run)
    except ValueError as e:
        raise opt.bad("--run", e) from e
    config = correct_config(spec, correct_args)
    adapter = None
    if not spec.endswith(":oracle"):
        if model is None:
            model = next(iter(tasks.values())).results.get("config", {}).get("model", "tiny")
            try:
                model = opt.check_model(model, "--model")
            except typer.BadParameter as e:
                raise opt.bad("--model", f"the run's model {model!r} cannot be loaded here; pass --model") from e
        else:
            model = opt.check_model(model, "--model")
        adapter = opt.load(model)
    run_correction(run, spec, config, adapter, limit)


def register(app: typer.Typer) -> None:
    app.command("correct", cls=opt.command(output=False))(correct)


__all__ = ["CORRECT_ARGS_HELP", "CORRECT_HELP", "correct_config", "register", "run_correction", "spec_option"]
