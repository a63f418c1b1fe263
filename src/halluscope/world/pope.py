"""POPE on the world: existence questions built from the exact ground truth by POPE's own rules
(Li et al., "Evaluating Object Hallucination in Large Vision-Language Models", EMNLP 2023, `utils.pope`)."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING, Any

from .language import POPE_TEMPLATE
from .scene import Scene

if TYPE_CHECKING:
    from .world import World

POPE_SPLITS = ("random", "popular", "adversarial")
# The random negatives of (seed, split) come from random.Random(seed * POPE_SEED_STRIDE + split index):
# a stride above the number of splits keeps the streams of different seeds apart.
POPE_SEED_STRIDE = 1_000_003
# pope_scenes gives up after this many images per image wanted (plus SCAN_SLACK): a world whose
# images rarely hold `sample_num` classes cannot fill the benchmark.
SCAN_PER_IMAGE = 100
SCAN_SLACK = 1000


def pope_scenes(world: World, n_images: int, image_split: str = "test", sample_num: int = 3) -> list[Scene]:
    """The first `n_images` scenes of `image_split` with at least `sample_num` distinct classes."""
    out, i = [], 0
    while len(out) < n_images:
        s = world.scene(image_split, i)
        if len(s.classes) >= sample_num:
            out.append(s)
        i += 1
        if i > SCAN_PER_IMAGE * n_images + SCAN_SLACK:
            raise ValueError(f"too few images with >= {sample_num} classes; raise max_objects")
    return out


def pope_questions(world: World, split: str = "adversarial", n_images: int = 500, image_split: str = "test",
                   sample_num: int = 3) -> list[dict[str, Any]]:
    """`World.pope`: see its docstring."""
    if split not in POPE_SPLITS:
        raise ValueError(f"unknown POPE split {split!r}; use one of {POPE_SPLITS}")
    scenes = pope_scenes(world, n_images, image_split, sample_num)
    frequency = Counter(c for s in scenes for c in s.classes)
    popular = [c for c, _ in sorted(frequency.items(), key=lambda kv: kv[1], reverse=True)]
    co_occur: dict[str, Counter] = {}
    for s in scenes:
        for a in s.classes:
            co_occur.setdefault(a, Counter()).update(b for b in s.classes if b != a)
    ranked = {a: [b for b, _ in sorted(c.items(), key=lambda kv: kv[1], reverse=True)] for a, c in co_occur.items()}
    all_objects = list(frequency)  # in order of first appearance: the random draws index this list
    rng = random.Random(world.seed * POPE_SEED_STRIDE + POPE_SPLITS.index(split))
    records: list[dict[str, Any]] = []

    def add(scene: Scene, obj: str, label: str) -> None:
        records.append({"question_id": len(records) + 1, "image_id": scene.image_id,
                        "text": POPE_TEMPLATE.format(obj), "label": label, "object": obj})

    for scene in scenes:
        history: list[str] = []
        gt = scene.classes
        if sum(c not in gt for c in all_objects) < sample_num:  # the draw below would never end
            raise ValueError(f"image {scene.image_id} leaves fewer than sample_num={sample_num} absent classes for "
                             "its negatives; lower max_objects")
        for pos in gt[:sample_num]:
            history.append(pos)
            add(scene, pos, "yes")
            candidates = {"random": [], "popular": popular, "adversarial": ranked.get(pos, [])}[split]
            chosen = next((c for c in candidates if c not in history and c not in gt), None)
            while chosen is None or chosen in history or chosen in gt:
                chosen = rng.choice(all_objects)
            history.append(chosen)
            add(scene, chosen, "no")
    by_id = {s.image_id: s for s in scenes}
    images = {s.image_id: world.render(s) for s in scenes}
    for r in records:
        r["image"] = images[r["image_id"]]
        r["breaks_bias"] = by_id[r["image_id"]].breaks_bias
    return records


__all__ = ["POPE_SEED_STRIDE", "POPE_SPLITS", "pope_questions", "pope_scenes"]
