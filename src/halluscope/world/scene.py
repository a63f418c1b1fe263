"""A procedural visual world with exact ground truth and knobs for the biases behind hallucination.

An image is a 4x4 grid of 16 px cells on a 64x64 canvas; each object is a coloured glyph inside
one cell, so it falls inside one vision patch of the built-in model. The world is deterministic:
scene `i` of split `s` under seed `k` is always the same scene, whatever else was sampled.

The bias knobs reproduce the reasons real VLMs hallucinate:
- co-occurrence pairs (a fork usually comes with a knife) and scene types (kitchen, street...),
  which teach the language model to expect objects that are not there;
- attribute priors (a tree is usually green), which teach it to say the usual colour;
- a yes-bias in the training answers;
- visual uncertainty (small, faint, half-hidden objects, pixel noise), where priors win over pixels.
Test images can break the biases on purpose (a fork without its knife, a blue tree).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .glyphs import CLASSES, COLORS, GLYPHS, PLURALS

IMAGE_SIZE = 64
GRID = 4
CELL = IMAGE_SIZE // GRID
BACKGROUND = (28, 28, 32)
OCCLUDER = (120, 120, 120)
NUMBERS = ("zero", "one", "two", "three", "four", "five")
RELATIONS = ("left of", "right of", "above", "below")
SPLITS = ("train", "val", "test")
POPE_SPLITS = ("random", "popular", "adversarial")
POPE_TEMPLATE = "Is there a {} in the image?"

DEFAULT_SCENES: dict[str, tuple[str, ...]] = {
    "kitchen": ("fork", "knife", "cup", "plate"),
    "street": ("car", "bus", "sign", "lamp"),
    "park": ("tree", "bench", "dog", "ball"),
    "office": ("book", "pen", "phone", "clock"),
}
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("fork", "knife"),
    ("cup", "plate"),
    ("car", "bus"),
    ("dog", "ball"),
    ("book", "pen"),
)
DEFAULT_COLOR_PRIORS: dict[str, str] = {
    "tree": "green",
    "sign": "red",
    "bus": "yellow",
    "ball": "orange",
    "cup": "blue",
    "book": "purple",
}


@dataclass
class WorldConfig:
    """The world's knobs. Defaults make the built-in model hallucinate for the reasons real VLMs do."""

    min_objects: int = field(default=1, metadata={"help": "fewest objects in an image"})
    max_objects: int = field(default=5, metadata={"help": "most objects in an image (<= 16 cells)"})
    scenes: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_SCENES),
        metadata={"help": "scene type -> member classes; members co-occur"},
    )
    scene_strength: float = field(
        default=0.9, metadata={"help": "probability that an object comes from the image's scene"}
    )
    cooccurrence_pairs: tuple[tuple[str, str], ...] = field(
        default=DEFAULT_PAIRS, metadata={"help": "pairs whose members usually appear together"}
    )
    cooccurrence_strength: float = field(
        default=0.95, metadata={"help": "probability that a pair member brings its partner"}
    )
    color_priors: dict[str, str] = field(
        default_factory=lambda: dict(DEFAULT_COLOR_PRIORS),
        metadata={"help": "class -> its usual colour"},
    )
    color_prior_strength: float = field(
        default=0.85, metadata={"help": "probability that a class with a prior has its usual colour"}
    )
    duplicate_prob: float = field(
        default=0.15, metadata={"help": "probability of adding another instance of a present class"}
    )
    small_prob: float = field(default=0.25, metadata={"help": "probability that an object is small"})
    faint_prob: float = field(default=0.12, metadata={"help": "probability that an object is faint"})
    faint_level: float = field(
        default=0.3, metadata={"help": "ink opacity of a faint object (1 = full colour)"}
    )
    occlude_prob: float = field(
        default=0.12, metadata={"help": "probability that an object is half hidden by a grey block"}
    )
    noise_max: float = field(
        default=24.0, metadata={"help": "largest per-image Gaussian pixel noise std (0-255 scale)"}
    )
    yes_bias: float = field(
        default=0.6,
        metadata={"help": "share of 'yes' answers among training existence questions (0.5 = none)"},
    )
    test_breaking_fraction: float = field(
        default=0.5,
        metadata={"help": "share of val/test images that break a bias (lone pair member, odd colour)"},
    )
    train_size: int = field(default=200_000, metadata={"help": "number of distinct training scenes"})

    def __post_init__(self) -> None:
        def fail(name: str, fix: str) -> None:
            raise ValueError(f"WorldConfig.{name}={getattr(self, name)!r} is invalid: {fix}")

        if not 1 <= self.min_objects <= self.max_objects <= GRID * GRID:
            fail("max_objects", f"need 1 <= min_objects <= max_objects <= {GRID * GRID}")
        for name in (
            "scene_strength", "cooccurrence_strength", "color_prior_strength", "duplicate_prob",
            "small_prob", "faint_prob", "faint_level", "occlude_prob", "yes_bias",
            "test_breaking_fraction",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "use a probability in [0, 1]")
        if self.noise_max < 0:
            fail("noise_max", "use a non-negative std")
        self.scenes = {k: tuple(v) for k, v in self.scenes.items()}
        self.cooccurrence_pairs = tuple(tuple(p) for p in self.cooccurrence_pairs)
        for scene, members in self.scenes.items():
            if not members or any(c not in CLASSES for c in members):
                fail("scenes", f"scene {scene!r} must list classes from {CLASSES}")
        for pair in self.cooccurrence_pairs:
            if len(pair) != 2 or any(c not in CLASSES for c in pair) or pair[0] == pair[1]:
                fail("cooccurrence_pairs", f"each pair must be two different classes from {CLASSES}")
        for cls, color in self.color_priors.items():
            if cls not in CLASSES or color not in COLORS:
                fail("color_priors", f"map classes {CLASSES} to colours {tuple(COLORS)}")

    def partners(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for a, b in self.cooccurrence_pairs:
            out[a], out[b] = b, a
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
        """(a, relation, b) for every ordered pair of classes that appear once each.

        The relation is the dominant axis between the two cells: horizontal when |dcol| >= |drow|.
        """
        counts = self.counts()
        single = [o for o in self.objects if counts[o.cls] == 1]
        out = []
        for a in single:
            for b in single:
                if a is not b:
                    out.append((a.cls, relation(a, b), b.cls))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["counts"] = self.counts()
        d["relations"] = [list(r) for r in self.relations()]
        return d


def relation(a: WorldObject, b: WorldObject) -> str:
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


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(cls: str, n: int, adjectives: list[str] = ()) -> str:
    words = " ".join([*adjectives, PLURALS[cls] if n > 1 else cls])
    return f"{NUMBERS[n] if n > 1 else _article(words)} {words}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


CAPTION_PROMPTS = {
    "detailed": "Describe the image in detail.",
    "short": "Describe the image briefly.",
}


class World:
    """The synthetic world: `World(seed=0, **knobs)`; see `WorldConfig` for the knobs."""

    def __init__(self, seed: int = 0, **knobs: Any) -> None:
        valid = {f.name for f in dataclasses.fields(WorldConfig)}
        unknown = sorted(set(knobs) - valid)
        if unknown:
            raise TypeError(f"unknown world knob(s) {unknown}; valid knobs: {sorted(valid)}")
        self.seed = seed
        self.config = WorldConfig(**knobs)
        self._partners = self.config.partners()
        self._pair_classes = sorted(self._partners)

    # ---------------------------------------------------------------- scenes
    def _rng(self, split: str, index: int, purpose: int = 0) -> np.random.Generator:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        return np.random.default_rng([self.seed, SPLITS.index(split), index, purpose])

    def scene(self, split: str, index: int) -> Scene:
        """The ground truth of image `index` of `split` (deterministic)."""
        cfg = self.config
        rng = self._rng(split, index)
        scene_type = list(cfg.scenes)[rng.integers(len(cfg.scenes))]
        members = cfg.scenes[scene_type]
        n_target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        breaking = split != "train" and rng.random() < cfg.test_breaking_fraction
        breaks: list[str] = []
        banned: set[str] = set()
        classes: list[str] = []

        def add(cls: str) -> None:
            classes.append(cls)
            partner = self._partners.get(cls)
            if (partner is not None and partner not in classes and partner not in banned
                    and len(classes) < cfg.max_objects and rng.random() < cfg.cooccurrence_strength):
                classes.append(partner)

        odd_color_target = None
        if breaking:
            # A lone pair member (its partner banned), a class in an unusual colour, or both.
            kind = rng.integers(3)
            if kind in (0, 2):
                lone = self._pair_classes[rng.integers(len(self._pair_classes))]
                classes.append(lone)
                banned.add(self._partners[lone])
                breaks.append(f"lone:{lone}")
                scene_type = next((s for s, m in cfg.scenes.items() if lone in m), scene_type)
                members = cfg.scenes[scene_type]
            if kind in (1, 2) and cfg.color_priors:
                options = [c for c in cfg.color_priors if c not in classes and c not in banned]
                odd_color_target = options[rng.integers(len(options))]
                add(odd_color_target)
                breaks.append(f"color:{odd_color_target}")

        while len(classes) < n_target:
            pool = members if rng.random() < cfg.scene_strength else CLASSES
            cls = pool[rng.integers(len(pool))]
            if cls in classes or cls in banned:
                if all(c in classes or c in banned for c in CLASSES):
                    break
                continue
            add(cls)
        instances = list(classes)
        for cls in classes:
            if len(instances) < cfg.max_objects and rng.random() < cfg.duplicate_prob:
                instances.append(cls)
        # Place instances in random distinct cells.
        cells = rng.permutation(GRID * GRID)[: len(instances)]
        objects = []
        for cls, cell in zip(instances, cells):
            row, col = divmod(int(cell), GRID)
            usual = cfg.color_priors.get(cls)
            if cls == odd_color_target:
                options = [c for c in COLORS if c != usual] if usual else list(COLORS)
                color = options[rng.integers(len(options))]
            elif usual is not None and rng.random() < cfg.color_prior_strength:
                color = usual
            else:
                color = list(COLORS)[rng.integers(len(COLORS))]
            small = rng.random() < cfg.small_prob
            half = 4 if small else 7
            jitter = CELL // 2 - half - 1
            x = col * CELL + CELL // 2 + int(rng.integers(-jitter, jitter + 1))
            y = row * CELL + CELL // 2 + int(rng.integers(-jitter, jitter + 1))
            objects.append(
                WorldObject(
                    cls=cls, color=color, size="small" if small else "large", row=row, col=col,
                    x=x, y=y, faint=bool(rng.random() < cfg.faint_prob),
                    occluded=bool(rng.random() < cfg.occlude_prob),
                )
            )
        noise = float(rng.uniform(0, cfg.noise_max))
        return Scene(
            image_id=f"{split}-{index:06d}", split=split, index=index, scene_type=scene_type,
            objects=objects, noise=noise, breaks_bias=breaks,
        )

    # ---------------------------------------------------------------- pixels
    def render_array(self, scene: Scene) -> np.ndarray:
        """The image as a (64, 64, 3) uint8 array."""
        rng = self._rng(scene.split, scene.index, purpose=1)
        canvas = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
        canvas[:] = BACKGROUND
        for obj in scene.objects:
            bitmap = GLYPHS[obj.cls]
            if obj.size == "large":
                bitmap = bitmap.repeat(2, axis=0).repeat(2, axis=1)
            h, w = bitmap.shape
            top, left = obj.y - h // 2, obj.x - w // 2
            region = canvas[top : top + h, left : left + w]
            alpha = self.config.faint_level if obj.faint else 1.0
            ink = np.array(COLORS[obj.color], dtype=np.float32)
            region[bitmap] = (1 - alpha) * region[bitmap] + alpha * ink
            if obj.occluded:
                # A grey block hides one half of the glyph (which half is random).
                side = rng.integers(4)
                hh, hw = h // 2, w // 2
                box = [(slice(0, hh), slice(None)), (slice(h - hh, h), slice(None)),
                       (slice(None), slice(0, hw)), (slice(None), slice(w - hw, w))][side]
                region[box] = OCCLUDER
        if scene.noise > 0:
            canvas += rng.normal(0.0, scene.noise, canvas.shape).astype(np.float32)
        return np.clip(canvas, 0, 255).round().astype(np.uint8)

    def render(self, scene: Scene) -> Image.Image:
        return Image.fromarray(self.render_array(scene))

    def sample(self, split: str, n: int, start: int = 0) -> list[Sample]:
        """Images `start..start+n-1` of `split`, rendered, with their ground truth."""
        out = []
        for i in range(start, start + n):
            scene = self.scene(split, i)
            out.append(Sample(image=self.render(scene), truth=scene))
        return out

    # ---------------------------------------------------------------- language
    @staticmethod
    def caption(scene: Scene, style: str = "detailed") -> str:
        """A caption from the grammar. Objects are listed by class, in reading order of first
        appearance; the detailed style adds colour, size and up to two relations."""
        order = sorted(scene.objects, key=lambda o: (o.row, o.col))
        groups: dict[str, list[WorldObject]] = {}
        for o in order:
            groups.setdefault(o.cls, []).append(o)
        if style == "short":
            return f"{_article(scene.scene_type)} {scene.scene_type} scene with {_join([_noun_phrase(c, len(g)) for c, g in groups.items()])}."
        if style != "detailed":
            raise ValueError(f"unknown caption style {style!r}; use 'short' or 'detailed'")
        phrases = []
        for cls, objs in groups.items():
            colors = list(dict.fromkeys(o.color for o in objs))
            adjectives = ["small"] if all(o.size == "small" for o in objs) else []
            if len(colors) == 1:
                adjectives.append(colors[0])
            phrases.append(_noun_phrase(cls, len(objs), adjectives))
        sentences = [f"the image shows {_join(phrases)}."]
        singles = [cls for cls, g in groups.items() if len(g) == 1]
        for a, b in zip(singles[0:], singles[1:3]):
            rel = relation(groups[a][0], groups[b][0])
            sentences.append(f"the {a} is {rel} the {b}.")
        return " ".join(sentences)

    QUESTION_TYPES = ("existence", "attribute", "count", "relation")

    def class_frequency(self) -> np.ndarray:
        """How often each class appears in training images (estimated on 2,000 of them, cached)."""
        if not hasattr(self, "_class_freq"):
            counts = Counter(c for i in range(2000) for c in self.scene("train", i).classes)
            freq = np.array([counts[c] + 1 for c in CLASSES], dtype=float)
            self._class_freq = freq / freq.sum()
        return self._class_freq

    def question(self, scene: Scene, qtype: str, rng: np.random.Generator) -> dict[str, str] | None:
        """One question of type `qtype` with its exact answer, or None if the scene has none.

        Existence answers are 'yes' with probability `yes_bias`; an absent class is drawn in
        proportion to its training frequency, so that every class is asked about with both answers
        in the same proportion (uniform negatives would teach 'frequent class -> yes').
        """
        present = scene.classes
        absent = [c for c in CLASSES if c not in present]
        counts = scene.counts()
        if qtype == "existence":
            if absent and rng.random() >= self.config.yes_bias:
                p = self.class_frequency()[[CLASSES.index(c) for c in absent]]
                cls, answer = absent[rng.choice(len(absent), p=p / p.sum())], "no"
            else:
                cls, answer = present[rng.integers(len(present))], "yes"
            return {"type": qtype, "question": POPE_TEMPLATE.format(cls), "answer": answer}
        if qtype == "attribute":
            singles = [o for o in scene.objects if counts[o.cls] == 1]
            if not singles:
                return None
            o = singles[rng.integers(len(singles))]
            return {"type": qtype, "question": f"What color is the {o.cls}?", "answer": o.color}
        if qtype == "count":
            pool = present if (not absent or rng.random() < 0.5) else absent
            cls = pool[rng.integers(len(pool))]
            return {"type": qtype, "question": f"How many {PLURALS[cls]} are there?", "answer": NUMBERS[counts.get(cls, 0)]}
        if qtype == "relation":
            rels = scene.relations()
            if not rels:
                return None
            a, rel, b = rels[rng.integers(len(rels))]
            answer = "yes"
            if rng.random() < 0.5:
                rel, answer = [r for r in RELATIONS if r != rel][rng.integers(3)], "no"
            return {"type": qtype, "question": f"Is the {a} {rel} the {b}?", "answer": answer}
        raise ValueError(f"unknown question type {qtype!r}; use one of {self.QUESTION_TYPES}")

    def questions(self, scene: Scene, rng: np.random.Generator) -> list[dict[str, str]]:
        """One question of each type the scene allows (existence, attribute, count, relation)."""
        return [q for t in self.QUESTION_TYPES if (q := self.question(scene, t, rng)) is not None]

    def vocabulary(self) -> list[str]:
        """Every word the world's captions, questions and answers can use (lower case)."""
        texts = [POPE_TEMPLATE.format(""), *CAPTION_PROMPTS.values(), "What color is the", "How many are there?",
                 "Is the", "the image shows", "a an scene with", "small and , . ?", "yes no",
                 *self.config.scenes, *CLASSES, *PLURALS.values(), *COLORS, *NUMBERS, *RELATIONS]
        words: set[str] = set()
        for t in texts:
            words.update(tokenize_words(t))
        return sorted(words)

    # ---------------------------------------------------------------- POPE
    def pope(
        self, split: str = "adversarial", n_images: int = 500, image_split: str = "test",
        sample_num: int = 3,
    ) -> list[dict[str, Any]]:
        """POPE questions built from ground truth exactly as POPE's `utils.pope` builds them.

        Images with at least `sample_num` distinct classes are taken in index order. Per image, the
        first `sample_num` ground-truth objects each give a 'yes' question, each followed by a 'no'
        question about an absent object chosen at random, by popularity (object frequency over the
        images) or adversarially (the absent object that co-occurs most with that positive object).
        Question ids run 1, 2, 3... Each record has `question_id`, `image` (PIL), `image_id`,
        `text`, `label`, `object`.
        """
        if split not in POPE_SPLITS:
            raise ValueError(f"unknown POPE split {split!r}; use one of {POPE_SPLITS}")
        scenes = self.pope_scenes(n_images, image_split, sample_num)
        frequency = Counter(c for s in scenes for c in s.classes)
        popular = [c for c, _ in sorted(frequency.items(), key=lambda kv: kv[1], reverse=True)]
        co_occur: dict[str, Counter] = {}
        for s in scenes:
            for a in s.classes:
                co_occur.setdefault(a, Counter()).update(b for b in s.classes if b != a)
        ranked = {a: [b for b, _ in sorted(c.items(), key=lambda kv: kv[1], reverse=True)]
                  for a, c in co_occur.items()}
        all_objects = list(frequency)
        rng = random.Random(self.seed * 1_000_003 + POPE_SPLITS.index(split))
        records: list[dict[str, Any]] = []

        def add(scene: Scene, obj: str, label: str) -> None:
            records.append({"question_id": len(records) + 1, "image_id": scene.image_id,
                            "text": POPE_TEMPLATE.format(obj), "label": label, "object": obj,
                            "scene": scene})

        for scene in scenes:
            history: list[str] = []
            gt = scene.classes
            for pos in gt[:sample_num]:
                history.append(pos)
                add(scene, pos, "yes")
                candidates = {"random": [], "popular": popular, "adversarial": ranked.get(pos, [])}[split]
                chosen = next((c for c in candidates if c not in history and c not in gt), None)
                while chosen is None or chosen in history or chosen in gt:
                    chosen = rng.choice(all_objects)
                history.append(chosen)
                add(scene, chosen, "no")
        images = {s.image_id: self.render(s) for s in scenes}
        for r in records:
            r["image"] = images[r["image_id"]]
            r["breaks_bias"] = r.pop("scene").breaks_bias
        return records

    def pope_scenes(self, n_images: int, image_split: str = "test", sample_num: int = 3) -> list[Scene]:
        out, i = [], 0
        while len(out) < n_images:
            s = self.scene(image_split, i)
            if len(s.classes) >= sample_num:
                out.append(s)
            i += 1
            if i > 100 * n_images + 1000:
                raise ValueError(f"too few images with >= {sample_num} classes; raise max_objects")
        return out


_WORD = re.compile(r"\w+|[^\w\s]+")


def tokenize_words(text: str) -> list[str]:
    """The word split of the built-in tokenizer (lower case; punctuation apart)."""
    return _WORD.findall(text.lower())
