"""Scenes: the exact ground truth of one image (`Scene`, `WorldObject`), and how the world draws them
(`SceneSampler`), with the bias knobs of `WorldConfig`."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .config import CELL, GRID, WorldConfig
from .glyphs import CLASSES, COLORS

SPLITS = ("train", "val", "test")
RELATIONS = ("left of", "right of", "above", "below")
# Half the drawn size of a glyph (7x7 bitmap: 7 px small, 14 px large), rounded up: the jitter of an
# object's centre keeps the whole glyph inside its cell.
HALF_SIZE = {"small": 4, "large": 7}


@dataclass
class WorldObject:
    cls: str
    color: str
    size: str  # "large" or "small"
    row: int
    col: int
    x: int  # centre, pixels
    y: int
    faint: bool = False
    occluded: bool = False

    @property
    def uncertain(self) -> bool:
        return self.size == "small" or self.faint or self.occluded


@dataclass
class Scene:
    """Exact ground truth of one image."""

    image_id: str
    split: str
    index: int
    scene_type: str
    objects: list[WorldObject]
    noise: float
    breaks_bias: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Distinct classes, in the order they were placed."""
        return list(dict.fromkeys(o.cls for o in self.objects))

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.cls for o in self.objects))

    def relations(self) -> list[tuple[str, str, str]]:
        """(a, relation, b) for every ordered pair of classes that appear once each."""
        counts = self.counts()
        single = [o for o in self.objects if counts[o.cls] == 1]
        return [(a.cls, relation(a, b), b.cls) for a in single for b in single if a is not b]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["counts"] = self.counts()
        d["relations"] = [list(r) for r in self.relations()]
        return d


def relation(a: WorldObject, b: WorldObject) -> str:
    """Where `a` is relative to `b`, one of `RELATIONS`: along the dominant axis between their cells,
    horizontal when |dcol| >= |drow|."""
    dcol, drow = a.col - b.col, a.row - b.row
    if abs(dcol) >= abs(drow):
        return "left of" if dcol < 0 else "right of"
    return "above" if drow < 0 else "below"


@dataclass
class Sample:
    """One image of the world with its ground truth."""

    image: Image.Image
    truth: Scene

    @property
    def image_id(self) -> str:
        return self.truth.image_id


@dataclass
class _Draft:
    """The classes of a scene being drawn, in placement order, and what its bias-breaking decided."""

    scene_type: str
    classes: list[str] = field(default_factory=list)
    banned: set[str] = field(default_factory=set)  # partners of a lone pair member
    breaks: list[str] = field(default_factory=list)
    odd_color: str | None = None  # the class drawn in an unusual colour


class SceneSampler:
    """Draws a scene from `rng` in these steps: a scene type and an object count; on val/test images,
    maybe a broken bias; classes from the scene type (each pair member bringing its partner); extra
    instances of present classes; then cells, colours, sizes, positions and visual uncertainty, and
    the pixel noise. The order of the draws is part of the world's definition: every trained model
    depends on it."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.partners = config.partners()
        self.pair_classes = sorted(self.partners)

    def __call__(self, split: str, index: int, rng: np.random.Generator) -> Scene:
        cfg = self.config
        draft = _Draft(scene_type=list(cfg.scenes)[rng.integers(len(cfg.scenes))])
        n_target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        if split != "train" and rng.random() < cfg.test_breaking_fraction:
            self._break_a_bias(draft, rng)
        self._fill(draft, n_target, rng)
        objects = self._place(self._duplicate(draft.classes, rng), draft.odd_color, rng)
        noise = float(rng.uniform(0, cfg.noise_max))
        return Scene(image_id=f"{split}-{index:06d}", split=split, index=index, scene_type=draft.scene_type,
                     objects=objects, noise=noise, breaks_bias=draft.breaks)

    def _add(self, draft: _Draft, cls: str, rng: np.random.Generator) -> None:
        """Add `cls`; a pair member brings its partner with probability `cooccurrence_strength`
        (no draw when the partner cannot come)."""
        cfg = self.config
        draft.classes.append(cls)
        partner = self.partners.get(cls)
        if (partner is not None and partner not in draft.classes and partner not in draft.banned
                and len(draft.classes) < cfg.max_objects and rng.random() < cfg.cooccurrence_strength):
            draft.classes.append(partner)

    def _break_a_bias(self, draft: _Draft, rng: np.random.Generator) -> None:
        """A lone pair member (its partner banned), a class in an unusual colour, or both."""
        cfg = self.config
        kind = rng.integers(3)  # 0: lone member, 1: odd colour, 2: both
        if kind in (0, 2):
            lone = self.pair_classes[rng.integers(len(self.pair_classes))]
            draft.classes.append(lone)
            draft.banned.add(self.partners[lone])
            draft.breaks.append(f"lone:{lone}")
            # the lone member's own scene type, so that the rest of the scene is its usual company
            draft.scene_type = next((s for s, m in cfg.scenes.items() if lone in m), draft.scene_type)
        if kind in (1, 2) and cfg.color_priors:
            options = [c for c in cfg.color_priors if c not in draft.classes and c not in draft.banned]
            draft.odd_color = options[rng.integers(len(options))]
            self._add(draft, draft.odd_color, rng)
            draft.breaks.append(f"color:{draft.odd_color}")

    def _fill(self, draft: _Draft, n_target: int, rng: np.random.Generator) -> None:
        """Distinct classes up to `n_target`, from the scene type with probability `scene_strength`."""
        cfg = self.config
        members = cfg.scenes[draft.scene_type]
        while len(draft.classes) < n_target:
            pool = members if rng.random() < cfg.scene_strength else CLASSES
            cls = pool[rng.integers(len(pool))]
            if cls in draft.classes or cls in draft.banned:
                if all(c in draft.classes or c in draft.banned for c in CLASSES):
                    break
                continue
            self._add(draft, cls, rng)

    def _duplicate(self, classes: list[str], rng: np.random.Generator) -> list[str]:
        """One instance per class, plus another with probability `duplicate_prob` while cells last."""
        instances = list(classes)
        for cls in classes:
            if len(instances) < self.config.max_objects and rng.random() < self.config.duplicate_prob:
                instances.append(cls)
        return instances

    def _place(self, instances: list[str], odd_color: str | None, rng: np.random.Generator) -> list[WorldObject]:
        """Each instance in its own random cell, with its colour, size, jittered centre, faintness
        and occlusion."""
        cfg = self.config
        cells = rng.permutation(GRID * GRID)[: len(instances)]
        objects = []
        for cls, cell in zip(instances, cells):
            row, col = divmod(int(cell), GRID)
            color = self._color(cls, cls == odd_color, rng)
            size = "small" if rng.random() < cfg.small_prob else "large"
            jitter = CELL // 2 - HALF_SIZE[size] - 1
            x = col * CELL + CELL // 2 + int(rng.integers(-jitter, jitter + 1))
            y = row * CELL + CELL // 2 + int(rng.integers(-jitter, jitter + 1))
            faint = bool(rng.random() < cfg.faint_prob)
            occluded = bool(rng.random() < cfg.occlude_prob)
            objects.append(WorldObject(cls=cls, color=color, size=size, row=row, col=col, x=x, y=y,
                                       faint=faint, occluded=occluded))
        return objects

    def _color(self, cls: str, odd: bool, rng: np.random.Generator) -> str:
        """Its usual colour with probability `color_prior_strength` (any other one when it breaks
        the prior), else a uniform colour."""
        usual = self.config.color_priors.get(cls)
        if odd:
            options = [c for c in COLORS if c != usual] if usual else list(COLORS)
            return options[rng.integers(len(options))]
        if usual is not None and rng.random() < self.config.color_prior_strength:
            return usual
        return list(COLORS)[rng.integers(len(COLORS))]


__all__ = ["HALF_SIZE", "RELATIONS", "SPLITS", "Sample", "Scene", "SceneSampler", "WorldObject", "relation"]
