"""`halluscope steer ...`: fit VTI directions and look at a directions file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ..world import CAPTION_PROMPTS
from . import _options as opt

app = typer.Typer(help="Steer hidden states with VTI: fit directions, then decode with method 'vti'.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)

# The help lists steering's REDUCTIONS and VISION_TOKENS without importing torch; tests/test_cli.py checks them.
REDUCTIONS_HELP = "pca, mean, pca+mean"
VISION_TOKENS_HELP = "auto, position, mean"


def _reduction(value: str) -> str:
    from ..steering.directions import REDUCTIONS

    return opt.choice(value, REDUCTIONS, "a reduction")


def _vision_tokens(value: str) -> str:
    from ..steering.fit import VISION_TOKENS

    return opt.choice(value, VISION_TOKENS, "a vision-token mode")


def _split(value: str) -> str:
    from ..world import SPLITS

    return opt.choice(value, SPLITS, "a world split")


def _share(value: float) -> float:
    if not 0 < value <= 1:
        raise typer.BadParameter(f"{value} is not in (0, 1]")
    return value


def _shape(t) -> list[int] | None:
    return None if t is None else list(t.shape)


@app.command(cls=opt.command())
def fit(
    model: Annotated[str, typer.Option(metavar=opt.MODEL, callback=opt.model_option, help=opt.MODEL_HELP)] = "tiny",
    output: Annotated[Path, typer.Option(metavar="FILE", help="directions file to write (.safetensors)")
                      ] = Path("directions.safetensors"),
    n_images: Annotated[int, typer.Option(min=1, help="demo images (and caption pairs)")] = 50,
    trials: Annotated[int, typer.Option(min=1, help="masked copies per image")] = 50,
    mask_ratio: Annotated[float, typer.Option(callback=_share, help="share of patches masked per copy, in (0, 1]")
                          ] = 0.99,
    method: Annotated[str, typer.Option(callback=_reduction, help=f"reduction over demos: {REDUCTIONS_HELP}")] = "pca",
    seed: Annotated[int, typer.Option(help="seed for demos, masks and hallucinated captions")] = 0,
    vision_tokens: Annotated[str, typer.Option(callback=_vision_tokens, help=f"{VISION_TOKENS_HELP}: per-position "
                                                                             "or token-mean vision directions")
                             ] = "auto",
    prompt: Annotated[str, typer.Option(help="prompt before the captions")] = CAPTION_PROMPTS["detailed"],
    split: Annotated[str, typer.Option(callback=_split, help="world split of the demo images")] = "train",
    world_seed: Annotated[int, typer.Option(help="world seed")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="images or caption pairs per forward pass")] = 16,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if available)")] = None,
) -> None:
    """Fit VTI directions on world demos (images, true and hallucinated captions) and save them
    with their metadata. Use them with `--method vti --method-args directions=OUTPUT`."""
    from ..progress import progress
    from ..steering.fit import FitConfig, fit_directions
    from ..world import World

    if output.is_dir():
        raise opt.bad("--output", f"{str(output)!r} is a folder; pass a file name such as directions.safetensors")
    values = {"n_images": n_images, "trials": trials, "mask_ratio": mask_ratio, "method": method, "seed": seed,
              "vision_tokens": vision_tokens, "prompt": prompt, "split": split, "batch_size": batch_size}
    try:
        config = FitConfig(**values)
    except ValueError as e:  # a combination the options' own checks pass, e.g. --n-images 1 with pca
        named = [k for k in values if f".{k}=" in str(e)]
        raise opt.bad("--" + (named[0] if named else "n_images").replace("_", "-"), e) from e
    if device is not None:
        opt.model_args(f"device={device}", "--device")
    adapter = opt.load(model, device=device)
    t0 = time.time()
    with progress() as bar:
        tasks = {"vision": bar.add_task(f"vision ({trials} masked copies each)", total=n_images),
                 "text": bar.add_task("text (caption pairs)", total=n_images)}
        directions = fit_directions(adapter, config, world=World(seed=world_seed),
                                    progress=lambda part, done, total: bar.update(tasks[part], completed=done))
    seconds = time.time() - t0
    output.parent.mkdir(parents=True, exist_ok=True)
    directions.save(output)
    typer.echo(f"fitted in {seconds:.1f} s: vision {_shape(directions.vision)}, text {_shape(directions.text)} "
               f"-> {output}")


@app.command(cls=opt.command(output=False))
def show(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="directions file")]) -> None:
    """Print a directions file's shapes and metadata."""
    from ..steering.directions import Directions

    try:
        d = Directions.load(path)
    except Exception as e:  # not a safetensors file, or one without directions: the file is what is wrong
        raise opt.bad("path", f"{str(path)!r} is not a directions file ({type(e).__name__}: {e}); "
                              "make one with `halluscope steer fit`") from e
    typer.echo(json.dumps({"vision": _shape(d.vision), "text": _shape(d.text), **d.metadata}, indent=1))
