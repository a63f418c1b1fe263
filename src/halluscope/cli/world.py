"""`halluscope world ...`: look at the synthetic world."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from . import _options as opt

app = typer.Typer(help="Look at the synthetic world: render images with their ground truth.", no_args_is_help=True,
                  rich_markup_mode=None)


def _split(value: str) -> str:
    from ..world import SPLITS

    return opt.choice(value, SPLITS, "a world split")


@app.command("sample", cls=opt.command(knobs="--world-args", seed="--world-seed"))
def sample(
    output: Annotated[Path, typer.Option(metavar="DIR", callback=opt.output_folder,
                                         help="folder for PNG images and truth.jsonl")] = Path("world-samples"),
    n: Annotated[int, typer.Option(min=1, help="number of images")] = 16,
    split: Annotated[str, typer.Option(callback=_split, help="train, val or test")] = "test",
    world_args: Annotated[str | None, typer.Option(metavar="K=V,...",
                                                   help="world knobs (WorldConfig fields), e.g. noise_max=0")] = None,
    world_seed: Annotated[int, typer.Option(help="world seed")] = 0,
) -> None:
    """Render N images of a split with their ground truth and captions."""
    world = opt.world(world_args, world_seed)
    output.mkdir(parents=True, exist_ok=True)
    with (output / "truth.jsonl").open("w") as f:
        for s in world.sample(split, n):
            s.image.save(output / f"{s.image_id}.png")
            f.write(json.dumps({**s.truth.to_dict(), "caption": world.caption(s.truth)}) + "\n")
    typer.echo(f"wrote {n} images and truth.jsonl to {output}")
