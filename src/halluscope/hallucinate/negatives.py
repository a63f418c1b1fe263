"""LRV-style negative instructions (Liu et al., "Mitigating Hallucination in Large Multi-Modal Models
via Robust Instruction Tuning", ICLR 2024): questions that presuppose something false about the
image, answered with the refusal that corrects them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..world import CLASSES, COLORS, QUESTION_TEMPLATES, RELATIONS, Scene, World
from .base import as_rng, pick
from .cooccurrence import COCO_CATEGORIES, COCO_COOCCURRENCE
from .world import cooccurring

POPE_COLOR_TEMPLATE = "Is there a {color} {cls} in the image?"
NEGATIVE_KINDS = ("absent_object", "wrong_attribute")
# Questions about an object of a real image, for `negative_instructions`.
REAL_TEMPLATES = ("Describe the {} in the image.", "What color is the {} in the image?",
                  "Where is the {} in the image?")


def world_negative_instructions(world: World, scene: Scene, rng: np.random.Generator | int | None = None,
                                kinds: Iterable[str] = NEGATIVE_KINDS) -> list[dict[str, str]]:
    """LRV-style questions that presuppose something false about `scene`, with the refusal that
    corrects it, in the world's vocabulary (so the built-in model can be trained on them):

    - "absent_object": a question about an object that is not there (one that co-occurs with what
      is, the hard case): "what color is the knife?" -> "there is no knife in the image."
    - "wrong_attribute": a present object with a wrong colour (its usual one where it has another):
      "is there a green tree in the image?" -> "no, the tree is blue."
    Each record has "question", "answer", "kind" and "target" (the object).
    """
    rng = as_rng(rng)
    present = scene.classes
    counts = scene.counts()
    out = []
    for kind in kinds:
        if kind == "absent_object":
            absent = [c for c in CLASSES if c not in present]
            if not absent:
                continue
            near = [c for p in present for c in cooccurring(world, p) if c in absent]
            target = pick(rng, near or absent)
            singles = [c for c in present if counts[c] == 1]
            templates = [QUESTION_TEMPLATES["attribute"].format(target)]
            if singles:
                templates.append(QUESTION_TEMPLATES["relation"].format(target, pick(rng, list(RELATIONS)),
                                                                       pick(rng, singles)))
            out.append({"question": pick(rng, templates), "answer": f"there is no {target} in the image.",
                        "kind": kind, "target": target})
        elif kind == "wrong_attribute":
            singles = [o for o in scene.objects if counts[o.cls] == 1]
            if not singles:
                continue
            o = pick(rng, singles)
            usual = world.config.color_priors.get(o.cls)
            wrong = usual if usual is not None and usual != o.color else pick(rng, [c for c in COLORS if c != o.color])
            out.append({"question": POPE_COLOR_TEMPLATE.format(color=wrong, cls=o.cls),
                        "answer": f"no, the {o.cls} is {o.color}.", "kind": kind, "target": o.cls})
        else:
            raise ValueError(f"unknown negative instruction kind {kind!r}; use one of {NEGATIVE_KINDS}")
    return out


def negative_instructions(objects: Iterable[str], cooccurrence: Mapping[str, Sequence[str]] | None = None,
                          n: int = 2, rng: np.random.Generator | int | None = None) -> list[dict[str, str]]:
    """LRV-style negative instructions for a real image whose ground-truth COCO categories are
    `objects`: questions about absent objects that co-occur with present ones (the hard ones, as
    POPE's adversarial split picks them), answered with a refusal."""
    rng = as_rng(rng)
    table = COCO_COOCCURRENCE if cooccurrence is None else cooccurrence
    objects = list(dict.fromkeys(objects))
    present = set(objects)
    # round robin over the objects by association rank: every object's closest associate first
    depth = max((len(table.get(p, ())) for p in objects), default=0)
    candidates = list(dict.fromkeys(c for rank in range(depth) for p in objects
                                    for c in table.get(p, ())[rank:rank + 1] if c not in present))
    if len(candidates) < n:
        candidates += [c for c in COCO_CATEGORIES if c not in present and c not in candidates]
    out = []
    for target in candidates[:n]:
        out.append({"question": pick(rng, list(REAL_TEMPLATES)).format(target),
                    "answer": f"There is no {target} in the image.", "kind": "absent_object", "target": target})
    return out


__all__ = ["NEGATIVE_KINDS", "POPE_COLOR_TEMPLATE", "REAL_TEMPLATES", "negative_instructions",
           "world_negative_instructions"]
