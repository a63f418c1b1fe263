"""Discriminative questions of every kind on the world's test images, AMBER-style: per image, a balanced
pair of yes/no questions about one item (one true, one false), plus an open question for colour and
count. Built from the exact ground truth; each question says what the world's prior would answer and
whether the asked item breaks a bias.

Per image, by kind (the item asked about is one that breaks a bias where the image has one, else one
drawn at random):

- existence: "Is there a X in the image?" for a present class (yes) and an absent one (no); the absent
  one is the missing co-occurrence partner of a present class where there is one (the prior says yes:
  the item breaks the co-occurrence bias), else a random absent class;
- attribute: "Is the X c?" with its true colour (yes) and another (no: the class's usual colour when
  the object breaks its colour prior), and "What color is the X?", about an object alone of its class;
- count: "Is there one X?" / "Are there n Xs?" with its true number (yes) and another (no: the usual
  number when the class breaks its count prior), and "How many Xs are there?", about a present class;
- relation: "Is the A r the B?" with their true relation (yes) and another (no: the usual one when the
  pair breaks its spatial prior), about two objects alone of their classes (a pair with a spatial prior
  first, asked in the prior's order).

An item breaks a bias when the truth differs from the prior (an absent partner, an unusual colour,
number or side), whatever made it so: the test images' `breaks_bias` tags are one way, the priors'
strength below 1 another. `prior` is the answer the prior gives (None where the item has no prior).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .glyphs import CLASSES, COLORS, PLURALS
from .language import NUMBERS, QUESTION_TEMPLATES, YES_NO_TEMPLATES
from .scene import RELATIONS, SPLITS, Scene, relation

if TYPE_CHECKING:
    from .world import World

QA_KINDS = ("existence", "attribute", "count", "relation")
# The random stream of a scene's questions: [seed, split, index, QA_STREAM, kind]; World keys streams 0
# (the scene) and 1 (its pixels).
QA_STREAM = 2
# The numbers a count question may ask about.
MAX_ASKED_COUNT = 3


def _pick(rng: np.random.Generator, items: list):
    return items[rng.integers(len(items))]


def _prior_says(prior, asked) -> str | None:
    """The prior's answer to "is it `asked`?" ("yes" when `asked` is the usual value), None without a prior."""
    return None if prior is None else ("yes" if asked == prior else "no")


def _yes_no(kind: str, text: str, label: str, prior: str | None, breaks: bool, **item: Any) -> dict[str, Any]:
    return {"kind": kind, "form": "yes_no", "text": text, "label": label, "prior": prior, "breaks": breaks, **item}


def _pair(kind: str, ask, true_value, false_value, prior, breaks: bool, **item: Any) -> list[dict[str, Any]]:
    """The balanced yes/no pair about one item: `ask(value)` with the true value (yes) and a false one (no)."""
    return [_yes_no(kind, ask(v), label, _prior_says(prior, v), breaks, value=v, **item)
            for v, label in ((true_value, "yes"), (false_value, "no"))]


def _open(kind: str, text: str, label: str, prior: str | None, breaks: bool, **item: Any) -> dict[str, Any]:
    return {"kind": kind, "form": "open", "text": text, "label": label, "prior": prior, "breaks": breaks, **item}


def _existence(world: World, scene: Scene, rng: np.random.Generator) -> list[dict[str, Any]]:
    present = scene.classes
    partners = world.config.partners()
    absent = [c for c in CLASSES if c not in present]
    missing = [partners[c] for c in present if c in partners and partners[c] not in present]
    yes_cls = _pick(rng, present)
    yes_prior = "yes" if partners.get(yes_cls) in present else None
    out = [_yes_no("existence", YES_NO_TEMPLATES["existence"].format(yes_cls), "yes", yes_prior, False,
                   object=yes_cls)]
    if absent:
        no_cls = _pick(rng, missing) if missing else _pick(rng, absent)
        out.append(_yes_no("existence", YES_NO_TEMPLATES["existence"].format(no_cls), "no",
                           "yes" if missing else None, bool(missing), object=no_cls))
    return out


def _attribute(world: World, scene: Scene, rng: np.random.Generator) -> list[dict[str, Any]]:
    counts = scene.counts()
    singles = [o for o in scene.objects if counts[o.cls] == 1]
    if not singles:
        return []
    usual = world.config.usual_color
    odd = [o for o in singles if usual(o.cls) is not None and o.color != usual(o.cls)]
    o = _pick(rng, odd or singles)
    prior, breaks = usual(o.cls), bool(odd)
    other = prior if breaks else _pick(rng, [c for c in COLORS if c != o.color])
    ask = YES_NO_TEMPLATES["attribute"].format
    return [*_pair("attribute", lambda c: ask(o.cls, c), o.color, other, prior, breaks, object=o.cls),
            _open("attribute", QUESTION_TEMPLATES["attribute"].format(o.cls), o.color, prior, breaks, object=o.cls)]


def count_question(cls: str, n: int) -> str:
    """'Is there one fork?' or 'Are there two forks?'."""
    return YES_NO_TEMPLATES["count_one"].format(cls) if n == 1 else YES_NO_TEMPLATES["count"].format(NUMBERS[n],
                                                                                                    PLURALS[cls])


def _count(world: World, scene: Scene, rng: np.random.Generator) -> list[dict[str, Any]]:
    counts = scene.counts()
    usual = world.config.usual_count
    odd = [c for c in scene.classes if usual(c) is not None and counts[c] != usual(c)]
    cls = _pick(rng, odd or scene.classes)
    n, prior, breaks = counts[cls], usual(cls), bool(odd)
    other = prior if breaks else _pick(rng, [m for m in range(1, max(MAX_ASKED_COUNT, n + 1) + 1) if m != n])
    return [*_pair("count", lambda m: count_question(cls, m), n, other, prior, breaks, object=cls),
            _open("count", QUESTION_TEMPLATES["count"].format(PLURALS[cls]), NUMBERS[n],
                  None if prior is None else NUMBERS[prior], breaks, object=cls)]


def _relation(world: World, scene: Scene, rng: np.random.Generator) -> list[dict[str, Any]]:
    counts = scene.counts()
    singles = {o.cls: o for o in scene.objects if counts[o.cls] == 1}
    if len(singles) < 2:
        return []
    usual = world.config.usual_relation
    with_prior = [(a, b) for a, b in world.config.spatial_pairs() if a in singles and b in singles]
    odd = [(a, b) for a, b in with_prior if relation(singles[a], singles[b]) != usual(a, b)]
    pairs = odd or with_prior or [(a, b) for a in singles for b in singles if a != b]
    a, b = _pick(rng, pairs)
    true, prior, breaks = relation(singles[a], singles[b]), usual(a, b), bool(odd)
    other = prior if breaks else _pick(rng, [r for r in RELATIONS if r != true])
    ask = YES_NO_TEMPLATES["relation"].format
    return _pair("relation", lambda r: ask(a, r, b), true, other, prior, breaks, object=a, other=b)


BUILDERS = {"existence": _existence, "attribute": _attribute, "count": _count, "relation": _relation}


def qa_questions(world: World, kind: str, n_images: int = 500, image_split: str = "test") -> list[dict[str, Any]]:
    """`World.qa`: the questions of `kind` about the first `n_images` images of `image_split` that
    have an item to ask about (see the module docstring). Each record has `question_id` (1, 2, ...),
    `image_id`, `image` (PIL), `kind`, `form` ("yes_no" or "open"), `text`, `label` (yes/no, or the
    colour or number word), `prior`, `breaks` (the item breaks a bias), `object` (and `other`, the
    relation's second class; `value`, the colour, number or relation asked) and `breaks_bias` (the
    image's tags)."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown question kind {kind!r}; use one of {QA_KINDS}")
    if image_split not in SPLITS:
        raise ValueError(f"unknown split {image_split!r}; use one of {SPLITS}")
    records: list[dict[str, Any]] = []
    i = images = 0
    while images < n_images:
        scene = world.scene(image_split, i)
        rng = np.random.default_rng([world.seed, SPLITS.index(image_split), i, QA_STREAM, QA_KINDS.index(kind)])
        questions = BUILDERS[kind](world, scene, rng)
        if questions:
            image = world.render(scene)
            for q in questions:
                records.append({"question_id": len(records) + 1, "image_id": scene.image_id, "image": image, **q,
                                "breaks_bias": scene.breaks_bias})
            images += 1
        i += 1
        if i > 100 * n_images + 1000:
            raise ValueError(f"too few {image_split} images with a {kind} question; raise max_objects")
    return records


__all__ = ["BUILDERS", "MAX_ASKED_COUNT", "QA_KINDS", "QA_STREAM", "count_question", "qa_questions"]
