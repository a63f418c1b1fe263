"""`halluscope study CAUSE`: what makes a VLM hallucinate, by experiment: one cause at several levels, each
level trained on several seeds, every arm measured on the same test images, dose-response curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _options as opt


def _cause(value: str) -> str:
    from ..causes import CAUSES

    return value and opt.choice(value, list(CAUSES), "a cause the lab can vary")


def _seeds(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise opt.bad("--seeds", f"{value!r} is not a list of whole numbers; e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise opt.bad("--seeds", f"{value!r}: give distinct training seeds separated by commas, e.g. 0,1,2")
    return seeds


def study(
    cause: Annotated[str, typer.Argument(callback=_cause, metavar="CAUSE", help=(
        "cooccurrence, yes-bias, annotation-noise, color-prior, spatial-prior, count-prior (data); resolution "
        "(vision); connector; lm-size (language model); temperature, top-p (decoding). `halluscope study --list` "
        "shows each cause's knob and default levels"))] = "",
    levels: Annotated[str | None, typer.Option(metavar="L1,L2,...",
        help="levels of the cause (default: the cause's own four or more)")] = None,
    seeds: Annotated[str, typer.Option(metavar="S1,S2,...", help="training seeds per level")] = "0,1,2",
    model_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="TinyConfig fields of the study recipe (default: the built-in model's sizes)")] = None,
    train_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="TrainConfig fields of the study recipe (default: steps=1400,batch_size=24,"
             "vision_pretrain_steps=400)")] = None,
    study_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="StudyConfig fields: pope_images, chair_images, prior_images, batch_size, threads")] = None,
    output: Annotated[Path | None, typer.Option(metavar="DIR", callback=opt.output_folder,
        help="output folder (default: halluscope-study-CAUSE): study.json, study.md, plots/, arms/; a rerun "
             "resumes")] = None,
    list_causes: Annotated[bool, typer.Option("--list", help="list the causes and exit")] = False,
) -> None:
    """Vary one cause of hallucination and retrain: each (level, seed) arm is a cached model plus its evaluation
    (POPE x3, CHAIR, false claims per kind, language prior, base rank); writes a dose-response plot per metric
    and the literature's direction beside the lab's. Interrupted, it resumes where it stopped."""
    from ..causes import CAUSES, StudyConfig, run_study
    from ..models.tiny import TinyConfig
    from ..training.sft import TrainConfig

    if list_causes:
        for c in CAUSES.values():
            typer.echo(f"{c.name:17} {c.group:15} {c.sets}; levels {','.join(map(str, c.levels))}")
        raise typer.Exit()
    if not cause:
        raise opt.bad("CAUSE", f"name a cause: {', '.join(CAUSES)} (halluscope study --list)")
    c = CAUSES[cause]
    try:
        chosen = c.parse_levels(levels) if levels is not None else list(c.levels)
    except ValueError as e:
        raise opt.bad("--levels", str(e).removeprefix("--levels: ")) from e
    if len(set(map(str, chosen))) != len(chosen):
        raise opt.bad("--levels", "a level is given twice; give each once")
    recipe = {"model": StudyConfig().model, "train": StudyConfig().train}
    for name, cls, text in (("model", TinyConfig, model_args), ("train", TrainConfig, train_args)):
        if text is not None:
            option = f"--{name}-args"
            built = opt.config(cls, text, option)  # each value read as its field's type and checked
            recipe[name] = {k: getattr(built, k) for k in opt.kv_args(text, option)}
    config = opt.config(StudyConfig, study_args, "--study-args", fixed=recipe)
    out = output or Path(f"halluscope-study-{cause}")
    result = run_study(c, chosen, _seeds(seeds), out, config)
    verdicts = {m: e["verdict"] for m, e in result["summary"]["effects"].items() if e["expected_sign"] is not None}
    typer.echo(f"wrote {out}/study.json, study.md and {len(result.get('plots', {}))} plots; against the literature: "
               + ", ".join(f"{m} {v}" for m, v in verdicts.items()))


def register(app: typer.Typer) -> None:
    app.command(cls=opt.command())(study)
