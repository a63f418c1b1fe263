"""`halluscope train` (the built-in model) and `halluscope align` (preference alignment of any model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _options as opt

# The help lists training.preference.METHODS without importing torch; tests/test_cli.py checks it is complete.
ALIGN_METHODS_HELP = ("'dpo' (Rafailov et al. 2023), 'ddpo' (RLHF-V's dense DPO), or 'sft' (the control: "
                      "the same pairs and steps, chosen responses only)")


def train(
    output: Annotated[Path | None, typer.Option(metavar="DIR",
        callback=opt.output_folder, help="output folder (default: the cache folder load_model('tiny') uses)")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="optimizer steps (default: TrainConfig's)")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="samples per step (default: TrainConfig's)")] = None,
    lr: Annotated[float | None, typer.Option(callback=opt.positive_number,
                                             help="peak learning rate (default: TrainConfig's)")] = None,
    seed: Annotated[int | None, typer.Option(help="training seed (default: TrainConfig's)")] = None,
    train_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="any other TrainConfig field, e.g. vision_pretrain_steps=600,warmup_steps=50")] = None,
    world_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="world knobs (WorldConfig fields), e.g. cooccurrence_strength=0.5,yes_bias=0.5")] = None,
    world_seed: Annotated[int, typer.Option(help="world seed")] = 0,
    hacl: Annotated[bool, typer.Option(
        help="HACL (Jiang et al., CVPR 2024): contrastive connector alignment with hallucinated captions as hard "
             "negatives, before instruction tuning")] = False,
    hacl_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="HACLConfig fields, e.g. steps=300,temperature=0.07 (seed: the training seed unless given; "
             "contrastive_weight=0 is the control: the same alignment stage on L_gen alone)")] = None,
) -> None:
    """Train the built-in model on the world (captions and questions). Resumes from the checkpoint
    in the output folder if a run was interrupted. A number left out takes TrainConfig's default."""
    if hacl_args and not hacl:
        raise opt.bad("--hacl-args", "configures the HACL stage; add --hacl")
    from ..training.sft import TrainConfig

    fixed = {k: v for k, v in {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed}.items()
             if v is not None}
    cfg = opt.config(TrainConfig, train_args, "--train-args", fixed=fixed)
    world = opt.world(world_args, world_seed)
    hacl_cfg = None
    if hacl:
        from ..training.hacl import HACLConfig

        hacl_cfg = opt.config(HACLConfig, hacl_args, "--hacl-args", defaults={"seed": cfg.seed})
    from ..zoo.tiny import train_tiny

    path = train_tiny(world, cfg, out=output, hacl_config=hacl_cfg)
    typer.echo(f"saved the trained model to {path}; use it with --model {path}")


def _align_method(value: str) -> str:
    from ..training.preference import METHODS

    return opt.choice(value, list(METHODS), "an alignment method")


def align(
    output: Annotated[Path, typer.Option(metavar="DIR", callback=opt.output_folder,
                                         help="output folder: the aligned model, pairs.jsonl, align_log.json")],
    model: Annotated[str, typer.Option(metavar=opt.MODEL, callback=opt.model_option, help=opt.MODEL_HELP)] = "tiny",
    method: Annotated[str, typer.Option(callback=_align_method, help=ALIGN_METHODS_HELP)] = "ddpo",
    align_args: Annotated[str | None, typer.Option(metavar="K=V,...",
        help="fields of the method's config (DPOConfig, DDPOConfig or PairSFTConfig), "
             "e.g. steps=200,lr=2e-5,gamma=5,lora=True")] = None,
) -> None:
    """Preference alignment on the world: the model's own captions (rejected) against their
    minimal corrections from ground truth (chosen). Resumes from OUTPUT's checkpoint; data-parallel
    with `accelerate launch --num_processes N -m halluscope align ...` (add --multi_gpu on CPU)."""
    from ..training.preference import METHODS, train_preference

    cfg = opt.config(METHODS[method], align_args, "--align-args")
    adapter = opt.load(model)
    path = train_preference(adapter, cfg, output_dir=output)
    typer.echo(f"saved the aligned model to {path}; use it with --model {path}")


def register(app: typer.Typer) -> None:
    app.command(cls=opt.command(knobs="--world-args"))(train)
    app.command(cls=opt.command(args="--align-args"))(align)
