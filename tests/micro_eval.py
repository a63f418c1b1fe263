"""Run a world benchmark with the micro random built-in model: `python micro_eval.py OUT BENCH N`
(BENCH: chair or pope). Used by the runner tests as a subprocess (to kill it, or to launch it
with accelerate); the model is built from a fixed seed, so every process gets the same weights."""

import sys

import torch

from halluscope import World
from halluscope.tasks.world import WorldCHAIR, WorldPOPE
from halluscope.decoding import VLMAdapter
from halluscope.models.tiny import TinyConfig, build_model, build_processor
from halluscope.runner import run_benchmark


def micro_adapter(world: World) -> VLMAdapter:
    processor = build_processor(world)
    config = TinyConfig(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)
    return VLMAdapter(build_model(processor, config), processor, name="micro-random", max_new_tokens=12)


def benchmark(world: World, kind: str, n: int):
    if kind == "chair":
        return WorldCHAIR(world, n_images=n, max_new_tokens=12)
    return WorldPOPE(world, "random", n_images=n)


if __name__ == "__main__":
    out, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    world = World(seed=0)
    run_benchmark(benchmark(world, kind, n), micro_adapter(world), out, batch_size=2, progress=False)
