"""Hallucinations on the world, from the scene's exact ground truth: mirrors of a true caption
(`world_hallucinations`) and the minimal correction of a model's caption (`world_correction`).

Both edit captions as data (`CaptionParts` from `halluscope.world`) and render them with the world's
own grammar, so a mirror differs from the truth in exactly the tagged way and every word stays in
the built-in model's vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..world import (
    CLASSES, COLORS, NUMBERS, CaptionParts, Phrase, Scene, World, caption_parts, objects_by_class,
    parse_world_caption, place, relation,
)
from .base import Hallucination, as_rng, check_kinds, pick

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def cooccurring(world: World, cls: str) -> list[str]:
    """Classes that tend to appear with `cls`: its pair partner first, then its scene-mates."""
    out = [world.config.partners()[cls]] if cls in world.config.partners() else []
    for members in world.config.scenes.values():
        if cls in members:
            out += [m for m in members if m != cls and m not in out]
    return out


# ---------------------------------------------------------------------------- mirrors
def world_hallucinations(world: World, scene: Scene, style: str = "detailed", kinds: Iterable[str] | None = None,
                         rng: np.random.Generator | int | None = None) -> list[Hallucination]:
    """One hallucinated mirror of `World.caption(scene, style)` per kind that applies to the scene.

    Short captions have no colours and no relations, so only "object", "count" and "added" apply
    to them. Each mirror is the caption's parts (`caption_parts`) with one edit, rendered with the
    same grammar.
    """
    rng = as_rng(rng)
    original = world.caption(scene, style)
    present = set(scene.classes)
    out = []
    for kind in check_kinds(kinds):
        parts = caption_parts(scene, style)
        change = _MUTATIONS[kind](world, parts, present, rng, style)
        if change is not None:
            target, changed = change
            out.append(Hallucination(parts.render(style), kind, original, target, changed, "world"))
    return out


# Each mutation edits `parts` in place and returns (target, (true, said)), or None where its kind
# does not apply to the caption.
def _swap_object(world, parts, present, rng, style):
    mentioned = {p.cls for p in parts.phrases}
    options = []  # (rank of co-occurrence, phrase index, new class): the partner first
    for i, p in enumerate(parts.phrases):
        for rank, other in enumerate(cooccurring(world, p.cls)):
            if other not in present and other not in mentioned:
                options.append((rank, i, other))
                break
    if not options:
        absent = [c for c in CLASSES if c not in present]
        options = [(0, i, pick(rng, absent)) for i in range(len(parts.phrases))] if absent else []
    if not options:
        return None
    best = min(r for r, _, _ in options)
    _, i, new = pick(rng, [o for o in options if o[0] == best])
    old = parts.phrases[i].cls
    parts.phrases[i].cls = new
    parts.relations = [(new if a == old else a, r, new if b == old else b) for a, r, b in parts.relations]
    parts.places = {(new if a == old else a, new if b == old else b): p for (a, b), p in parts.places.items()}
    return new, (old, new)


def _wrong_color(world, parts, present, rng, style):
    options = [p for p in parts.phrases if p.color is not None]
    if not options:
        return None
    p = pick(rng, options)
    usual = world.config.color_priors.get(p.cls)
    # The usual colour is the hallucination a biased model makes; otherwise any other colour.
    wrong = usual if usual is not None and usual != p.color else pick(rng, [c for c in COLORS if c != p.color])
    old, p.color = p.color, wrong
    return p.cls, (old, wrong)


def _wrong_count(world, parts, present, rng, style):
    plural = [p for p in parts.phrases if p.n >= 2]
    in_relations = {c for a, _, b in parts.relations for c in (a, b)}
    # Prefer changes that leave the relation sentences (about single objects) as they are.
    options = plural or [p for p in parts.phrases if p.cls not in in_relations] or parts.phrases
    p = pick(rng, options)
    old = p.n
    if p.n >= 3 and (p.n == len(NUMBERS) - 1 or rng.random() < 0.5):
        p.n -= 1
    else:
        p.n += 1
    return p.cls, (NUMBERS[old], NUMBERS[p.n])


def _wrong_relation(world, parts, present, rng, style):
    if not parts.relations:
        return None
    i = int(rng.integers(len(parts.relations)))
    a, r, b = parts.relations[i]
    parts.relations[i] = (a, OPPOSITE[r], b)
    return a, (r, OPPOSITE[r])


def _add_object(world, parts, present, rng, style):
    absent = [c for c in CLASSES if c not in present]
    if not absent:
        return None
    cooccurring_absent = [c for p in parts.phrases for c in cooccurring(world, p.cls)[:1] if c in absent]
    scene_mates = [c for c in world.config.scenes.get(parts.scene_type, ()) if c in absent]
    new = pick(rng, cooccurring_absent or scene_mates or absent)
    color = None
    if style == "detailed":
        color = world.config.color_priors.get(new) or pick(rng, list(COLORS))
    parts.phrases.insert(int(rng.integers(1, len(parts.phrases) + 1)), Phrase(new, 1, color=color))
    return new, ("", new)


_MUTATIONS = {"object": _swap_object, "attribute": _wrong_color, "count": _wrong_count,
              "relation": _wrong_relation, "added": _add_object}


# ---------------------------------------------------------------------------- correction
def world_correction(scene: Scene, caption: str) -> tuple[str, str] | None:
    """(caption, minimal correction) of a model's caption of `scene`, both written in the grammar,
    or None if the caption is not in the world's grammar.

    As in RLHF-V's fine-grained corrections, only what is wrong changes, and omissions stay
    omitted: an absent object becomes a present one the caption did not mention (or goes, when
    there is none left), a wrong number or colour becomes the true one (a colour the truth cannot
    state, as for objects of mixed colours, goes), "small" goes where the objects are not all
    small, a wrong relation is turned the right way, and a relation sentence about objects that are
    absent or not single goes.
    """
    parsed = parse_world_caption(caption)
    if parsed is None:
        return None
    parts, style = parsed
    rejected = parts.render(style)
    groups = objects_by_class(scene)
    unmentioned = [c for c in groups if c not in {p.cls for p in parts.phrases}]
    renamed: dict[str, str] = {}
    phrases, seen = [], set()
    for p in parts.phrases:
        if p.cls in seen:  # the same class twice: the second mention goes
            continue
        if p.cls not in groups:
            if not unmentioned:
                continue
            renamed[p.cls] = p.cls = unmentioned.pop(0)
        seen.add(p.cls)
        objs = groups[p.cls]
        colors = {o.color for o in objs}
        p.n = len(objs)
        if p.color is not None and colors != {p.color}:
            p.color = next(iter(colors)) if len(colors) == 1 else None
        if p.small and not all(o.size == "small" for o in objs):
            p.small = False
        phrases.append(p)
    if not phrases:  # nothing true was said: the truth is the minimal correction
        return rejected, World.caption(scene, style)
    relations, places = [], {}
    for a, _, b in parts.relations:
        a, b = renamed.get(a, a), renamed.get(b, b)
        if a in groups and b in groups and a != b and len(groups[a]) == 1 and len(groups[b]) == 1:
            oa, ob = groups[a][0], groups[b][0]
            relations.append((a, relation(oa, ob), b))
            if parts.places:  # the caption said places: the correction says the true ones
                places[a, b] = (place(oa), place(ob))
    return rejected, CaptionParts(parts.scene_type or scene.scene_type, phrases, relations, places).render(style)


__all__ = ["OPPOSITE", "cooccurring", "world_correction", "world_hallucinations"]
