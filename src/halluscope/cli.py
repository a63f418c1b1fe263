"""The `halluscope` command line."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .steering.cli import app as steer_app

app = typer.Typer(help="Diagnose, measure and reduce hallucination in vision-language models.",
                  no_args_is_help=True, add_completion=False)
world_app = typer.Typer(help="Look at the synthetic world: render images with their ground truth.", no_args_is_help=True)
app.add_typer(world_app, name="world")
app.add_typer(steer_app, name="steer")


def parse_kv(text: str | None, what: str) -> dict[str, Any]:
    """'alpha=1,beta=0.1,name=x' -> {'alpha': 1, 'beta': 0.1, 'name': 'x'}."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        if "=" not in part:
            raise typer.BadParameter(f"{what}: {part!r} is not key=value (example: alpha=1,beta=0.1)")
        key, value = part.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _world(knobs: str | None, seed: int):
    from .world import World

    try:
        return World(seed=seed, **parse_kv(knobs, "--knobs"))
    except (TypeError, ValueError) as e:
        raise typer.BadParameter(str(e), param_hint="--knobs") from e


@app.command()
def demo(
    output: Annotated[Path, typer.Option(help="folder for results JSON, per-sample JSONL and report")] = Path("halluscope-demo"),
    pope_images: Annotated[int, typer.Option(help="test images per POPE split (6 questions each)")] = 500,
    chair_images: Annotated[int, typer.Option(help="test images captioned for CHAIR")] = 1000,
    batch_size: Annotated[int, typer.Option(help="evaluation batch size")] = 64,
    retrain: Annotated[bool, typer.Option(help="train the built-in model again even if cached")] = False,
) -> None:
    """The main job: train (first run: about 10 minutes on 2 CPU cores) or load the built-in model,
    evaluate greedy decoding on POPE (random, popular, adversarial) and CHAIR on the world, print a
    table and write results.json, per-sample JSONL files and report.md into OUTPUT."""
    from . import load_model
    from .benchmarks.world import WorldCHAIR, WorldPOPE
    from .models import cache_dir
    from .report import hallucination_checks, markdown_report, print_summary
    from .runner import package_versions, run_benchmark, write_json
    from .world import POPE_SPLITS, World

    t0 = time.time()
    world = World()
    adapter = load_model("tiny", retrain=retrain)
    t_model = time.time() - t0
    typer.echo(f"built-in model ready in {t_model:.0f} s: {adapter.name}")
    results = {}
    for split in POPE_SPLITS:
        bench = WorldPOPE(world, split, n_images=pope_images)
        results[bench.name] = run_benchmark(bench, adapter, output, batch_size=batch_size)
    bench = WorldCHAIR(world, n_images=chair_images)
    results[bench.name] = run_benchmark(bench, adapter, output, batch_size=batch_size)
    checks = hallucination_checks(results)
    print_summary(results, checks)
    header = {"model": adapter.name, "method": "greedy", "cache": str(cache_dir()),
              "model_ready_seconds": round(t_model, 1), "total_seconds": round(time.time() - t0, 1)}
    summary = {"header": header, "checks": checks, "versions": package_versions(),
               "results": {k: v["metrics"] for k, v in results.items()}}
    write_json(output / "results.json", summary)
    (output / "report.md").write_text(markdown_report(results, checks, header))
    typer.echo(f"wrote {output / 'results.json'}, {output / 'report.md'} and per-sample JSONL in {time.time() - t0:.0f} s")


@app.command()
def train(
    out: Annotated[Path | None, typer.Option(help="output folder (default: the cache folder load_model('tiny') uses)")] = None,
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 0,
    batch_size: Annotated[int, typer.Option(help="samples per step")] = 0,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 0.0,
    seed: Annotated[int, typer.Option(help="training seed")] = 0,
    knobs: Annotated[str | None, typer.Option(help="world knobs, e.g. cooccurrence_strength=0.5,yes_bias=0.5")] = None,
    world_seed: Annotated[int, typer.Option(help="world seed")] = 0,
    hacl: Annotated[bool, typer.Option(help="HACL (Jiang et al., CVPR 2024): contrastive connector alignment with "
                                            "hallucinated captions as hard negatives, before instruction tuning")] = False,
    hacl_args: Annotated[str | None, typer.Option(
        help="HACLConfig fields, e.g. steps=300,temperature=0.07 (seed: --seed's; contrastive_weight=0 is the "
             "control: the same alignment stage on L_gen alone)")] = None,
) -> None:
    """Train the built-in model on the world (captions and questions). Resumes from the checkpoint
    in the output folder if a run was interrupted. 0 means the default for a number."""
    from .models import train_tiny
    from .training.sft import TrainConfig

    defaults = TrainConfig()
    try:
        cfg = TrainConfig(steps=steps or defaults.steps, batch_size=batch_size or defaults.batch_size,
                          lr=lr or defaults.lr, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    world = _world(knobs, world_seed)
    if hacl:
        from .training.hacl import HACLConfig, train_tiny_hacl

        try:
            hacl_cfg = HACLConfig(**{"seed": seed, **parse_kv(hacl_args, "--hacl-args")})
        except (TypeError, ValueError) as e:
            raise typer.BadParameter(str(e), param_hint="--hacl-args") from e
        path = train_tiny_hacl(world, cfg, hacl_config=hacl_cfg, out=out)
    else:
        path = train_tiny(world, cfg, out=out)
    typer.echo(f"saved the trained model to {path}; use it with --model {path}")


@app.command()
def align(
    out: Annotated[Path, typer.Option(help="output folder: the aligned model, pairs.jsonl, align_log.json")],
    model: Annotated[str, typer.Option(help="'tiny', a local folder, or a hub id")] = "tiny",
    method: Annotated[str, typer.Option(help="'dpo' (Rafailov et al. 2023), 'ddpo' (RLHF-V's dense DPO), or 'sft' "
                                             "(the control: the same pairs and steps, chosen responses only)")] = "ddpo",
    args: Annotated[str | None, typer.Option(help="AlignConfig fields, e.g. steps=200,lr=2e-5,gamma=5,lora=True")] = None,
) -> None:
    """Preference alignment on the world: the model's own captions (rejected) against their
    minimal corrections from ground truth (chosen). Resumes from OUT's checkpoint; data-parallel
    with `accelerate launch --num_processes N -m halluscope align ...` (add --multi_gpu on CPU)."""
    from .training.align import AlignConfig
    from .training.align import align as run_align

    if method not in ("sft", "dpo", "ddpo"):
        raise typer.BadParameter(f"{method!r}: use 'dpo', 'ddpo' or 'sft'", param_hint="--method")
    try:
        cfg = AlignConfig(**parse_kv(args, "--args"))
    except (TypeError, ValueError) as e:
        raise typer.BadParameter(str(e), param_hint="--args") from e
    path = run_align(model, method=method, config=cfg, output_dir=out)
    typer.echo(f"saved the aligned model to {path}; use it with --model {path}")


@app.command("eval")
def evaluate(
    model: Annotated[str, typer.Option(help="'tiny', a local folder, or a hub id")] = "tiny",
    benchmark: Annotated[str, typer.Option(help="world-pope:SPLIT, world-chair, pope:SPLIT, chair, amber[:SUBSET], "
                                                "mme:SUBTASK (SPLIT: random, popular, adversarial)")] = "world-pope:adversarial",
    method: Annotated[str, typer.Option(help="decoding method (greedy, sample, ...)")] = "greedy",
    method_args: Annotated[str | None, typer.Option(help="method arguments, e.g. temperature=1.0,seed=0")] = None,
    batch_size: Annotated[int, typer.Option(help="samples per forward pass")] = 16,
    output: Annotated[Path, typer.Option(help="output folder")] = Path("halluscope-eval"),
    limit: Annotated[int | None, typer.Option(help="evaluate only the first K samples")] = None,
    seed: Annotated[int, typer.Option(help="seed for sampling methods")] = 0,
    images: Annotated[str | None, typer.Option(help="folder of a real benchmark's images (COCO val2014, AMBER, MME)")] = None,
    data: Annotated[str | None, typer.Option(help="a real benchmark's file: POPE questions (default: packaged COCO "
                                                  "files), CHAIR ground truth (JSON or COCO annotations folder), "
                                                  "AMBER data folder, MME questions")] = None,
    n_images: Annotated[int, typer.Option(help="world test images")] = 500,
    pope_mode: Annotated[str, typer.Option(help="yes/no answers: 'score' (one forward pass) or 'generate' (parsed text)")] = "score",
) -> None:
    """Evaluate a model with a method on a benchmark; one JSON line per sample, resumable.
    Data-parallel with `accelerate launch --num_processes N -m halluscope eval ...` (on a machine
    without GPUs add --multi_gpu, which makes accelerate start N processes; they use gloo)."""
    from . import load_model
    from .benchmarks import make_benchmark
    from .decoding import get_method
    from .runner import distributed_state, run_benchmark

    args = parse_kv(method_args, "--method-args")
    try:
        get_method(method, **args)  # fail before loading a model
    except (TypeError, ValueError) as e:
        raise typer.BadParameter(str(e), param_hint="--method/--method-args") from e
    if pope_mode not in ("score", "generate"):
        raise typer.BadParameter(f"{pope_mode!r}: use 'score' or 'generate'", param_hint="--pope-mode")
    try:
        bench = make_benchmark(benchmark, images=images, data=data, n_images=n_images, pope_mode=pope_mode)
        bench.samples()  # fail on missing data before loading a model
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e), param_hint="--benchmark/--images/--data") from e
    state = distributed_state()
    if state is None:
        adapter = load_model(model)
    else:
        with state.main_process_first():  # the built-in model trains once, on rank 0, then is loaded
            adapter = load_model(model, device=str(state.device))
    results = run_benchmark(bench, adapter, output, method=method, method_args=args,
                            batch_size=batch_size, limit=limit, seed=seed)
    if state is None or state.is_main_process:
        metrics = {k: v for k, v in results["metrics"].items() if not isinstance(v, dict | list)}
        typer.echo(json.dumps({"benchmark": bench.name, "method": method, **metrics}, indent=1))


@world_app.command("sample")
def world_sample(
    out: Annotated[Path, typer.Option(help="folder for PNG images and truth.jsonl")] = Path("world-samples"),
    n: Annotated[int, typer.Option(help="number of images")] = 16,
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    knobs: Annotated[str | None, typer.Option(help="world knobs, e.g. noise_max=0")] = None,
    seed: Annotated[int, typer.Option(help="world seed")] = 0,
) -> None:
    """Render N images of a split with their ground truth and captions."""
    world = _world(knobs, seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "truth.jsonl").open("w") as f:
        for s in world.sample(split, n):
            s.image.save(out / f"{s.image_id}.png")
            f.write(json.dumps({**s.truth.to_dict(), "caption": world.caption(s.truth)}) + "\n")
    typer.echo(f"wrote {n} images and truth.jsonl to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
