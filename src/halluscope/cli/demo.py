"""`halluscope demo`: the built-in model's hallucination profile on the world."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from . import _options as opt


DEFAULT_METHODS = "greedy,sample,vcd,icd,m3id,vdgd,vti,vti+vcd"


def demo(
    output: Annotated[Path, typer.Option(metavar="DIR", callback=opt.output_folder,
                                         help="folder for results.json, report.md, report.html and one folder "
                                              "of per-sample JSONL per method")] = Path("halluscope-demo"),
    model: Annotated[str, typer.Option(metavar=opt.MODEL, callback=opt.model_option,
                                       help="'tiny' (the built-in model, trained on first use) or a model folder")
                     ] = "tiny",
    methods: Annotated[str, typer.Option(metavar="A,B,...", callback=opt.method_list,
        help="methods to compare (greedy and sample, the baselines, are always run): any registered "
             "method or vti+NAME")] = DEFAULT_METHODS,
    pope_images: Annotated[int, typer.Option(min=1, help="greedy's test images per POPE split (6 questions "
                                                         "each) for the profile checks")] = 500,
    chair_images: Annotated[int, typer.Option(min=1, help="greedy's test images captioned for CHAIR")] = 1000,
    qa_images: Annotated[int, typer.Option(min=1, help="greedy's test images per world-qa kind (existence, "
                                                       "attribute, count, relation) for the profile per kind")] = 500,
    method_pope_images: Annotated[int, typer.Option(min=1, help="test images per POPE split for every method "
                                                                "in the comparison")] = 100,
    method_chair_images: Annotated[int, typer.Option(min=1, help="test images captioned by every method in the "
                                                                 "comparison")] = 300,
    batch_size: Annotated[int, typer.Option(min=1, help="evaluation batch size")] = 64,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads for evaluation (default: 1 for the "
        "built-in model, whose matrices are too small to share out: a second thread only waits, and on a busy "
        "machine it waits long; torch's default for other models)")] = None,
    retrain: Annotated[bool, typer.Option(help="train the built-in model again even if cached")] = False,
    train_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="the built-in model's training recipe: TrainConfig fields, e.g. steps=700,seed=1 "
             "(a model trained with `halluscope train` and the same arguments is found in the cache)")] = None,
    world_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="world knobs (WorldConfig fields), e.g. cooccurrence_strength=0.5, for training and test images")] = None,
    world_seed: Annotated[int, typer.Option(help="world seed")] = 0,
) -> None:
    """The main job: train (first run only; see the README for how long it takes) or load the
    built-in model, measure its hallucination profile with greedy decoding (POPE random, popular,
    adversarial, CHAIR with every claim judged, and yes/no questions of each kind on the world),
    compare every method against greedy and sampling at T = 1 on the same test images
    (paired-bootstrap differences, speed relative to greedy), and write results.json, report.md and
    report.html into OUTPUT (a rerun resumes)."""
    if model != "tiny" and (train_args or retrain):
        raise opt.bad("--train-args" if train_args else "--retrain",
                      f"trains the built-in model only; drop it, or use --model tiny instead of --model {model}")
    train_config = None
    if train_args:
        from ..training.sft import TrainConfig

        train_config = opt.config(TrainConfig, train_args, "--train-args")
    world = opt.world(world_args, world_seed)
    arms = list(dict.fromkeys(["greedy", "sample", *methods]))

    from ..compare import method_comparison, read_run, run_methods
    from ..report import hallucination_checks, kind_profile, markdown_report, print_comparison, print_summary
    from ..report.html import build_report
    from ..runner import package_versions, run_benchmark, write_json
    from ..tasks import WorldCHAIR, WorldPOPE, WorldQA
    from ..world import POPE_SPLITS, QA_KINDS
    from ..zoo.tiny import cache_dir

    t0 = time.time()
    if model == "tiny":
        adapter = opt.load(model, retrain=retrain, world=world, train_config=train_config)
    else:
        adapter = opt.load(model)
    t_model = time.time() - t0
    if threads or model == "tiny":
        import torch

        torch.set_num_threads(threads or 1)
    typer.echo(f"model ready in {t_model:.0f} s: {adapter.name}")
    # The methods first, so that greedy's speed is measured on the same captions as theirs.
    runs = run_methods(adapter, world, arms, output, pope_images=method_pope_images,
                       chair_images=method_chair_images, batch_size=batch_size)
    greedy = Path(runs["greedy"]["folder"])
    results = {}
    for split in POPE_SPLITS:
        task = WorldPOPE(world, split, n_images=pope_images)
        results[task.name] = run_benchmark(task, adapter, greedy, batch_size=batch_size)
    task = WorldCHAIR(world, n_images=chair_images)
    results[task.name] = run_benchmark(task, adapter, greedy, batch_size=batch_size)
    for kind in QA_KINDS:
        task = WorldQA(world, kind, n_images=qa_images)
        results[task.name] = run_benchmark(task, adapter, greedy, batch_size=batch_size)
    checks = hallucination_checks(results)
    comparison = method_comparison({name: read_run(run["folder"]) for name, run in runs.items()},
                                   {name: run["speed"] for name, run in runs.items()})
    print_summary(results, checks)
    print_comparison(comparison)
    header = {"model": adapter.name, "methods": ", ".join(arms), "cache": str(cache_dir()),
              "model_ready_seconds": round(t_model, 1), "total_seconds": round(time.time() - t0, 1)}
    summary = {"header": header, "checks": checks, "kinds": kind_profile(results), "versions": package_versions(),
               "results": {k: v["metrics"] for k, v in results.items()}, "comparison": comparison,
               "methods": {name: {k: run[k] for k in ("method", "method_args", "folder", "speed")}
                           for name, run in runs.items()}}
    write_json(output / "results.json", summary)
    summary["figures"] = build_report([output], output / "report.html")
    header["total_seconds"] = round(time.time() - t0, 1)
    write_json(output / "results.json", summary)
    (output / "report.md").write_text(markdown_report(results, checks, header, comparison))
    typer.echo(f"wrote {output / 'report.html'}, {output / 'report.md'}, {output / 'results.json'} and "
               f"per-sample JSONL in {time.time() - t0:.0f} s")


def register(app: typer.Typer) -> None:
    app.command(cls=opt.command(knobs="--world-args"))(demo)
