"""Hallucinated captions from the world's ground truth, for the textual VTI direction: one of
`halluscope.hallucinate.world_hallucinations`' mirrors of the true caption, which differ from it
in one fact of one kind (an object swapped for its co-occurring partner, a wrong colour, count or
relation).

`WorldHallucinator(world, seed)` is a `hallucinate(sample) -> str` callable; anything with that
signature can stand in for it (for real data, a generator of hallucinated captions of your own).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..hallucinate import KINDS, world_hallucinations
from ..world import SPLITS, Sample, Scene, World

# The kinds a demo draws from by default: all but "added", the one kind that lengthens the caption,
# so that a demo's two captions differ in one fact and not in length.
DEMO_KINDS = tuple(k for k in KINDS if k != "added")
# The random stream of a sample's mirror, beside the world's own streams of that image (its scene
# and its pixels, streams 0 and 1).
MIRROR_STREAM = 7


def hallucinated_caption(scene: Scene, world: World, rng: np.random.Generator,
                         kinds: tuple[str, ...] = DEMO_KINDS, style: str = "detailed", *,
                         types: tuple[str, ...] | None = None) -> tuple[str, str]:
    """(kind, caption): a hallucinated mirror of the scene's caption, of a kind drawn from `kinds`
    (kinds that do not apply to this scene, such as a relation with fewer than two stated, are skipped).
    `types` is the deprecated name of `kinds`."""
    kinds = _kinds(kinds, types)
    options = world_hallucinations(world, scene, style, kinds=kinds, rng=rng)
    if not options:
        raise ValueError(f"no hallucination of kinds {kinds} applies to scene {scene.image_id}; allow 'object'")
    pick = options[int(rng.integers(len(options)))]
    return pick.kind, pick.text


class WorldHallucinator:
    """`hallucinate(sample) -> str` for world samples: deterministic in (seed, sample), whatever
    order samples come in."""

    def __init__(self, world: World, seed: int = 0, kinds: tuple[str, ...] = DEMO_KINDS,
                 style: str = "detailed", *, types: tuple[str, ...] | None = None) -> None:
        self.world, self.seed, self.kinds, self.style = world, seed, tuple(_kinds(kinds, types)), style

    def __call__(self, sample: Sample) -> str:
        scene = sample.truth
        rng = np.random.default_rng([self.seed, SPLITS.index(scene.split), scene.index, MIRROR_STREAM])
        return hallucinated_caption(scene, self.world, rng, self.kinds, self.style)[1]


def _kinds(kinds: tuple[str, ...], types: tuple[str, ...] | None) -> tuple[str, ...]:
    if types is None:
        return kinds
    warnings.warn("the types= argument is deprecated; use kinds= (the same values)", DeprecationWarning, stacklevel=3)
    return types


def __getattr__(name: str) -> Any:
    if name == "HALLUCINATION_TYPES":
        warnings.warn("HALLUCINATION_TYPES is deprecated; use DEMO_KINDS (the default kinds of a demo) or "
                      "halluscope.hallucinate.KINDS (all kinds)", DeprecationWarning, stacklevel=2)
        return DEMO_KINDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEMO_KINDS", "MIRROR_STREAM", "WorldHallucinator", "hallucinated_caption"]
