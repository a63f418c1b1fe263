"""Benchmarks: the world's (exact ground truth) and the published ones on real images."""

from __future__ import annotations

from typing import Any

BENCHMARKS = ("world-pope:{random,popular,adversarial}", "world-chair", "pope:{random,popular,adversarial}",
              "chair", "amber:{all,generative,discriminative,existence,attribute,relation}",
              "mme:{existence,count,position,color}")


def make_benchmark(spec: str, *, images: str | None = None, data: str | None = None, n_images: int = 500,
                   pope_mode: str = "score", world: Any = None):
    """The benchmark named by `spec` (see BENCHMARKS). `images` is the folder of a real
    benchmark's images and `data` its question or ground-truth file; `n_images` sizes the world's."""
    from ..world import POPE_SPLITS, World
    from .real import AMBER, CHAIR, MME, POPE
    from .world import WorldCHAIR, WorldPOPE

    name, _, sub = spec.partition(":")
    if name == "world-pope" and sub in POPE_SPLITS:
        return WorldPOPE(world or World(), sub, n_images=n_images, mode=pope_mode)
    if name == "world-chair" and not sub:
        return WorldCHAIR(world or World(), n_images=n_images)
    if name == "pope" and sub in POPE_SPLITS:
        return POPE(sub, images=images, questions=data, mode=pope_mode)
    if name == "chair" and not sub:
        return CHAIR(gt=data, images=images)
    if name == "amber":
        return AMBER(sub or "all", data=data, images=images, mode=pope_mode)
    if name == "mme" and sub:
        return MME(sub, data=data, images=images, mode=pope_mode)
    raise ValueError(f"unknown benchmark {spec!r}; use one of {', '.join(BENCHMARKS)}")

__all__ = ["BENCHMARKS", "make_benchmark"]
