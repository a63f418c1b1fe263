"""`halluscope demo`: the built-in model's hallucination profile on the world."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from . import _options as opt


def demo(
    output: Annotated[Path, typer.Option(metavar="DIR", callback=opt.output_folder,
                                         help="folder for results.json, report.md and per-sample JSONL")
                      ] = Path("halluscope-demo"),
    model: Annotated[str, typer.Option(metavar=opt.MODEL, callback=opt.model_option,
                                       help="'tiny' (the built-in model, trained on first use) or a model folder")
                     ] = "tiny",
    pope_images: Annotated[int, typer.Option(min=1, help="test images per POPE split (6 questions each)")] = 500,
    chair_images: Annotated[int, typer.Option(min=1, help="test images captioned for CHAIR")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, help="evaluation batch size")] = 64,
    retrain: Annotated[bool, typer.Option(help="train the built-in model again even if cached")] = False,
    train_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="the built-in model's training recipe: TrainConfig fields, e.g. steps=700,seed=1 "
             "(a model trained with `halluscope train` and the same arguments is found in the cache)")] = None,
    world_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="world knobs (WorldConfig fields), e.g. cooccurrence_strength=0.5, for training and test images")] = None,
    world_seed: Annotated[int, typer.Option(help="world seed")] = 0,
) -> None:
    """The main job: train (first run only; see the README for how long it takes) or load the
    built-in model, evaluate greedy decoding on POPE (random, popular, adversarial) and CHAIR on the
    world, print a table and write results.json, per-sample JSONL files and report.md into OUTPUT."""
    if model != "tiny" and (train_args or retrain):
        raise opt.bad("--train-args" if train_args else "--retrain",
                      f"trains the built-in model only; drop it, or use --model tiny instead of --model {model}")
    train_config = None
    if train_args:
        from ..training.sft import TrainConfig

        train_config = opt.config(TrainConfig, train_args, "--train-args")
    world = opt.world(world_args, world_seed)

    from ..report import hallucination_checks, markdown_report, print_summary
    from ..runner import package_versions, run_benchmark, write_json
    from ..tasks import WorldCHAIR, WorldPOPE
    from ..world import POPE_SPLITS
    from ..zoo.tiny import cache_dir

    t0 = time.time()
    if model == "tiny":
        adapter = opt.load(model, retrain=retrain, world=world, train_config=train_config)
    else:
        adapter = opt.load(model)
    t_model = time.time() - t0
    typer.echo(f"model ready in {t_model:.0f} s: {adapter.name}")
    results = {}
    for split in POPE_SPLITS:
        task = WorldPOPE(world, split, n_images=pope_images)
        results[task.name] = run_benchmark(task, adapter, output, batch_size=batch_size)
    task = WorldCHAIR(world, n_images=chair_images)
    results[task.name] = run_benchmark(task, adapter, output, batch_size=batch_size)
    checks = hallucination_checks(results)
    print_summary(results, checks)
    header = {"model": adapter.name, "method": "greedy", "cache": str(cache_dir()),
              "model_ready_seconds": round(t_model, 1), "total_seconds": round(time.time() - t0, 1)}
    summary = {"header": header, "checks": checks, "versions": package_versions(),
               "results": {k: v["metrics"] for k, v in results.items()}}
    write_json(output / "results.json", summary)
    (output / "report.md").write_text(markdown_report(results, checks, header))
    typer.echo(f"wrote {output / 'results.json'}, {output / 'report.md'} and per-sample JSONL "
               f"in {time.time() - t0:.0f} s")


def register(app: typer.Typer) -> None:
    app.command(cls=opt.command(knobs="--world-args"))(demo)
