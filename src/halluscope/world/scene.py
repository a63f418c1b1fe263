"""Scenes: the exact ground truth of one image (`Scene`, `WorldObject`), and how the world draws them
(`SceneSampler`), with the bias knobs of `WorldConfig`."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from .config import CELL, GRID, RELATIONS, WorldConfig
from .glyphs import CLASSES, COLORS

SPLITS = ("train", "val", "test")
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


def _move(obj: WorldObject, cell: int) -> None:
    """`obj` into `cell`, at the same offset from the cell's centre."""
    row, col = divmod(cell, GRID)
    obj.x += (col - obj.col) * CELL
    obj.y += (row - obj.row) * CELL
    obj.row, obj.col = row, col


class Cell(NamedTuple):
    row: int
    col: int


_CELLS = tuple(Cell(*divmod(cell, GRID)) for cell in range(GRID * GRID))


def relation(a: WorldObject | Cell, b: WorldObject | Cell) -> str:
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
    odd_side: tuple[str, str, str] | None = None  # the spatial prior placed off its usual sides
    odd_count: str | None = None  # the class with a count prior that comes alone


class SceneSampler:
    """Draws a scene from `rng` in these steps: a scene type and an object count; on val/test images,
    maybe a broken bias; classes from the scene type (each pair member bringing its partner, each class
    with a count prior keeping room for its usual number); extra instances of present classes; then
    cells, colours, sizes, positions and visual uncertainty, and the pixel noise; last, the spatial
    priors (a pair's cells). The order of the draws is part of the world's definition: every trained
    model depends on it, and a world without count and spatial priors draws exactly the scenes it drew
    before they existed."""

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
        objects = self._place(self._duplicate(draft, rng), draft.odd_color, rng)
        noise = float(rng.uniform(0, cfg.noise_max))
        # The spatial priors act last, on the placed objects, with draws after all the others: a world
        # without them draws the same scenes as before they existed, and with them a scene keeps its objects.
        self._spatial_priors(objects, draft, rng)
        return Scene(image_id=f"{split}-{index:06d}", split=split, index=index, scene_type=draft.scene_type,
                     objects=objects, noise=noise, breaks_bias=draft.breaks + self._late_breaks(objects, draft))

    def _add(self, draft: _Draft, cls: str, rng: np.random.Generator) -> None:
        """Add `cls`; a pair member brings its partner with probability `cooccurrence_strength`
        (no draw when the partner cannot come)."""
        cfg = self.config
        draft.classes.append(cls)
        partner = self.partners.get(cls)
        if (partner is not None and partner not in draft.classes and partner not in draft.banned
                and len(draft.classes) + self._reserved(draft) < cfg.max_objects
                and rng.random() < cfg.cooccurrence_strength):
            draft.classes.append(partner)

    def _break_a_bias(self, draft: _Draft, rng: np.random.Generator) -> None:
        """A lone pair member (its partner banned), a class in an unusual colour, both, a spatial prior's
        pair off its usual sides, or a class with a count prior alone: drawn among the kinds the world has
        priors for."""
        cfg = self.config
        kinds = self.breaking_kinds()
        kind = kinds[rng.integers(len(kinds))]
        if kind in ("lone", "both"):
            lone = self.pair_classes[rng.integers(len(self.pair_classes))]
            draft.classes.append(lone)
            draft.banned.add(self.partners[lone])
            draft.breaks.append(f"lone:{lone}")
            # the lone member's own scene type, so that the rest of the scene is its usual company
            draft.scene_type = self._scene_of(lone, draft.scene_type)
        if kind in ("color", "both") and cfg.color_priors:
            options = [c for c in cfg.color_priors if c not in draft.classes and c not in draft.banned]
            if options:
                draft.odd_color = options[rng.integers(len(options))]
                self._add(draft, draft.odd_color, rng)
                draft.breaks.append(f"color:{draft.odd_color}")
        if kind == "side":
            draft.odd_side = cfg.spatial_priors[rng.integers(len(cfg.spatial_priors))]
            draft.classes += [draft.odd_side[0], draft.odd_side[2]]
            draft.scene_type = self._scene_of(draft.odd_side[0], draft.scene_type)
        if kind == "count":
            draft.odd_count = list(cfg.count_priors)[rng.integers(len(cfg.count_priors))]
            draft.classes.append(draft.odd_count)
            draft.scene_type = self._scene_of(draft.odd_count, draft.scene_type)

    def breaking_kinds(self) -> list[str]:
        """The kinds a bias-breaking image is drawn among, uniformly: those the world has priors for."""
        kinds = ["lone", "color", "both"] if self.pair_classes else ["color"]  # no pairs: no lone member
        return kinds + ["side"] * bool(self.config.spatial_priors) + ["count"] * bool(self.config.count_priors)

    def _scene_of(self, cls: str, default: str) -> str:
        return next((s for s, m in self.config.scenes.items() if cls in m), default)

    def _fill(self, draft: _Draft, n_target: int, rng: np.random.Generator) -> None:
        """Distinct classes up to `n_target`, from the scene type with probability `scene_strength`."""
        cfg = self.config
        members = cfg.scenes[draft.scene_type]
        while len(draft.classes) + self._reserved(draft) < n_target:
            pool = members if rng.random() < cfg.scene_strength else CLASSES
            cls = pool[rng.integers(len(pool))]
            if cls in draft.classes or cls in draft.banned:
                if all(c in draft.classes or c in draft.banned for c in CLASSES):
                    break
                continue
            self._add(draft, cls, rng)

    def _reserved(self, draft: _Draft) -> int:
        """The objects that the classes with a count prior may add beyond one each: `_fill` keeps room
        for them (0 in a world without count priors)."""
        priors = self.config.count_priors
        return sum(priors[c] - 1 for c in draft.classes if c in priors and c != draft.odd_count)

    def _duplicate(self, draft: _Draft, rng: np.random.Generator) -> list[str]:
        """One instance per class; then each class with a count prior gets its usual number with
        probability `count_prior_strength` (the class of a count-breaking image stays alone), and every
        other class another instance with probability `duplicate_prob`, while cells last."""
        cfg = self.config
        instances = list(draft.classes)
        alone = []  # classes with a count prior left alone by the draw: the room kept for them is unused
        for cls in [c for c in draft.classes if c in cfg.count_priors and c != draft.odd_count]:
            if len(instances) < cfg.max_objects and rng.random() < cfg.count_prior_strength:
                instances += [cls] * min(cfg.count_priors[cls] - 1, cfg.max_objects - len(instances))
            else:
                alone.append(cls)
        for cls in draft.classes:
            if cls in cfg.count_priors:
                continue
            if len(instances) < cfg.max_objects and rng.random() < cfg.duplicate_prob:
                instances.append(cls)
        for cls in alone:  # min_objects still holds: the unused room is filled after all (no draw)
            while len(instances) < cfg.min_objects and instances.count(cls) < cfg.count_priors[cls]:
                instances.append(cls)
        return instances

    def _place(self, instances: list[str], odd_color: str | None, rng: np.random.Generator) -> list[WorldObject]:
        """Each instance in its own random cell, with its colour, size, jittered centre, faintness
        and occlusion."""
        cells = rng.permutation(GRID * GRID)[: len(instances)]
        return [self._object(cls, int(cell), cls == odd_color, rng) for cls, cell in zip(instances, cells)]

    def _object(self, cls: str, cell: int, odd: bool, rng: np.random.Generator) -> WorldObject:
        cfg = self.config
        row, col = divmod(cell, GRID)
        color = self._color(cls, odd, rng)
        size = "small" if rng.random() < cfg.small_prob else "large"
        jitter = CELL // 2 - HALF_SIZE[size] - 1
        x = col * CELL + CELL // 2 + int(rng.integers(-jitter, jitter + 1))
        y = row * CELL + CELL // 2 + int(rng.integers(-jitter, jitter + 1))
        faint = bool(rng.random() < cfg.faint_prob)
        occluded = bool(rng.random() < cfg.occlude_prob)
        return WorldObject(cls=cls, color=color, size=size, row=row, col=col, x=x, y=y, faint=faint,
                           occluded=occluded)

    # ---------------------------------------------------------------- spatial priors, and breaks made late
    @staticmethod
    def _free_cells(objects: list[WorldObject]) -> list[int]:
        taken = {o.row * GRID + o.col for o in objects}
        return [c for c in range(GRID * GRID) if c not in taken]

    def _keep(self, objects: list[WorldObject], cls: str, n: int) -> None:
        """Drop the last objects of `cls` beyond `n`, as far as `min_objects` allows."""
        mine = [o for o in objects if o.cls == cls]
        for o in mine[n:][::-1]:
            if len(objects) <= self.config.min_objects:
                break
            objects.remove(o)

    def _spatial_priors(self, objects: list[WorldObject], draft: _Draft, rng: np.random.Generator) -> None:
        """A spatial prior's pair, each in the image once, is moved onto its usual sides with probability
        `spatial_prior_strength` (the first one into a random free cell where the relation holds, else the
        second); the pair of a side-breaking image is made single and moved off its usual sides."""
        cfg = self.config
        for a, rel, b in cfg.spatial_priors:
            odd = draft.odd_side == (a, rel, b)
            if odd:
                self._keep(objects, a, 1)
                self._keep(objects, b, 1)
            mine = {c: [o for o in objects if o.cls == c] for c in (a, b)}
            if len(mine[a]) != 1 or len(mine[b]) != 1:
                continue
            oa, ob = mine[a][0], mine[b][0]
            if odd:
                if relation(oa, ob) == rel:
                    self._move_until(oa, ob, lambda r, rel=rel: r != rel, objects, rng)
                continue
            if rng.random() < cfg.spatial_prior_strength and relation(oa, ob) != rel:
                self._move_until(oa, ob, lambda r, rel=rel: r == rel, objects, rng)

    def _move_until(self, oa: WorldObject, ob: WorldObject, wanted, objects: list[WorldObject],
                    rng: np.random.Generator) -> None:
        """Move `oa` (else `ob`, else both) to random free cells where `wanted(relation(oa, ob))` holds;
        where none do, leave them."""
        free = self._free_cells(objects)
        at = _CELLS  # where an object would be in each cell: all `relation` reads
        for mover, other, first in ((oa, ob, True), (ob, oa, False)):
            options = [c for c in free if wanted(relation(at[c], other) if first else relation(other, at[c]))]
            if options:
                _move(mover, options[rng.integers(len(options))])
                return
        cells = [*free, oa.row * GRID + oa.col, ob.row * GRID + ob.col]
        pairs = [(ca, cb) for ca in cells for cb in cells if ca != cb and wanted(relation(at[ca], at[cb]))]
        if pairs:
            ca, cb = pairs[rng.integers(len(pairs))]
            _move(oa, ca)
            _move(ob, cb)

    def _late_breaks(self, objects: list[WorldObject], draft: _Draft) -> list[str]:
        """The tags of the count and side breaks, where they happened: 'count:X' when X has not its usual
        number, 'side:A' when A and B of a prior are off their usual sides."""
        tags = []
        if draft.odd_count is not None:
            have = sum(o.cls == draft.odd_count for o in objects)
            if have and have != self.config.count_priors[draft.odd_count]:
                tags.append(f"count:{draft.odd_count}")
        if draft.odd_side is not None:
            a, rel, b = draft.odd_side
            oa, ob = [o for o in objects if o.cls == a], [o for o in objects if o.cls == b]
            if len(oa) == 1 and len(ob) == 1 and relation(oa[0], ob[0]) != rel:
                tags.append(f"side:{a}")
        return tags

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
