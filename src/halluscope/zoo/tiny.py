"""The built-in model, made top to bottom (`train_tiny`):

1. a fresh tiny LLaVA and its processor (`models.tiny`);
2. stage 0: the vision tower and the projector learn what each patch shows (`VisionPretrainer`);
3. optionally, a connector stage: the projector alone on captions, HACL's stage (`HACLTrainer`, at
   contrastive weight 0 unless HACL itself is asked for);
4. instruction tuning on captions and questions (`InstructionTrainer`);
5. save: model, processor, training log, and the marker last, which makes the folder a finished one.

Every stage resumes from its checkpoint, so an interrupted run picks up where it stopped and ends with
the same weights. The folder is cached under `cache_dir()`, named by a hash of the recipe (world, sizes,
training configs), so `load_model("tiny")` trains once per recipe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from ..models import MARKER
from ..models.tiny import TinyConfig, build_model, build_processor
from ..training.hacl import HACLConfig, HACLTrainer
from ..training.sft import InstructionTrainer, TrainConfig, VisionPretrainer
from ..world import World
from ..world.language import GRAMMAR_VERSION


def cache_dir() -> Path:
    """Where trained built-in models live: $HALLUSCOPE_CACHE, else ~/.cache/halluscope."""
    return Path(os.environ.get("HALLUSCOPE_CACHE", Path.home() / ".cache" / "halluscope"))


def connector_config(train_config: TrainConfig) -> HACLConfig | None:
    """The connector stage `TrainConfig.connector_steps` asks for: HACL's stage without its contrastive
    loss, so that HACL proper differs from it in that weight only."""
    if not train_config.connector_steps:
        return None
    return HACLConfig(steps=train_config.connector_steps, seed=train_config.seed, contrastive_weight=0.0)


def tiny_recipe(world: World | None = None, train_config: TrainConfig | None = None,
                tiny_config: TinyConfig | None = None, hacl_config: HACLConfig | None = None) -> dict[str, Any]:
    """Everything the built-in model's weights depend on."""
    world, train_config = world or World(), train_config or TrainConfig()
    recipe = {"world_seed": world.seed, "world": world.config.to_dict(), "grammar": GRAMMAR_VERSION,
              "model": (tiny_config or TinyConfig()).recipe(), "train": train_config.recipe()}
    hacl_config = hacl_config or connector_config(train_config)
    if hacl_config is not None:
        recipe["hacl"] = hacl_config.to_dict()
    return recipe


def tiny_path(recipe: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_dir() / f"tiny-{key}"


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold `folder`/.train.lock while training into `folder`: two processes training one folder at once would
    resume from each other's checkpoints and write weights of neither run. Waits, saying so, for another
    holder. It does not lock without fcntl (Windows), nor under a data-parallel launch, whose ranks train
    the folder together."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".train.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that is training {folder}", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train_tiny(world: World | None = None, train_config: TrainConfig | None = None,
               tiny_config: TinyConfig | None = None, out: str | Path | None = None, progress: bool = True,
               hacl_config: HACLConfig | None = None) -> Path:
    """Train the built-in model into `out` (default: its cache folder) and return the folder; a
    finished folder is returned as it is. `hacl_config` makes the connector stage HACL's (Jiang et al.,
    CVPR 2024), in place of the one `train_config.connector_steps` asks for."""
    world, train_config, tiny_config = world or World(), train_config or TrainConfig(), tiny_config or TinyConfig()
    if hacl_config is not None and train_config.connector_steps:
        train_config.fail("connector_steps", "leave it 0 when hacl_config sets the connector stage")
    hacl_config = hacl_config or connector_config(train_config)
    recipe = tiny_recipe(world, train_config, tiny_config, hacl_config)
    out = Path(out) if out is not None else tiny_path(recipe)
    if (out / MARKER).exists():
        return out
    with folder_lock(out):
        if (out / MARKER).exists():  # another process finished it while this one waited
            return out
        stages = out / "stages"
        torch.set_flush_denormal(True)  # sporadic long stalls on CPU without it

        processor = build_processor(world, tiny_config)
        model = build_model(processor, tiny_config, seed=train_config.seed)
        log: dict[str, Any] = {"paper": TrainConfig.paper(), "seconds": 0.0}

        if train_config.vision_pretrain_steps:
            stage0 = VisionPretrainer(model, processor, world, train_config, stages / "stage0", progress).train()
            log["vision_loss"], log["seconds"] = stage0["loss"], log["seconds"] + stage0["seconds"]

        if hacl_config is not None:
            trainer = HACLTrainer(model, processor, world, hacl_config, stages / "connector", progress)
            connector = trainer.train()
            log["connector"] = {**trainer.record(), "log": connector}
            log["seconds"] += connector["seconds"]

        instruct = InstructionTrainer(model, processor, world, train_config, stages / "instruct", progress).train()
        log["loss"], log["seconds"] = instruct["loss"], log["seconds"] + instruct["seconds"]

        model.save_pretrained(out)
        processor.save_pretrained(out)
        (out / "train_log.json").write_text(json.dumps(log))
        # The marker is written last: a folder without it is an unfinished run that will resume.
        (out / MARKER).write_text(json.dumps({"kind": "tiny", "recipe": recipe}, indent=1, default=str))
        shutil.rmtree(stages, ignore_errors=True)
        return out


def train_tiny_hacl(world: World | None = None, train_config: TrainConfig | None = None,
                    tiny_config: TinyConfig | None = None, hacl_config: HACLConfig | None = None,
                    out: str | Path | None = None, progress: bool = True) -> Path:
    """The arguments of the old `training.hacl.train_tiny_hacl`: `train_tiny` with HACL's connector
    stage (`hacl_config`, default `HACLConfig()`)."""
    return train_tiny(world, train_config, tiny_config, out, progress, hacl_config=hacl_config or HACLConfig())


def tiny_model_path(world: World | None = None, train_config: TrainConfig | None = None,
                    tiny_config: TinyConfig | None = None, retrain: bool = False, progress: bool = True) -> Path:
    """The cached built-in model of this recipe, trained first where it is missing (or `retrain`)."""
    path = tiny_path(tiny_recipe(world, train_config, tiny_config))
    if retrain and path.exists():
        shutil.rmtree(path)
    return train_tiny(world, train_config, tiny_config, path, progress=progress)


__all__ = ["cache_dir", "connector_config", "tiny_model_path", "tiny_path", "tiny_recipe", "train_tiny"]
