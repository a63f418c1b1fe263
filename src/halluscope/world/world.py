"""`World`: one seeded world, the entry point to its scenes, pixels, captions, questions and POPE.

Each concern lives in its own module (`scene`, `render`, `language`, `pope`); this class holds the
seed and the knobs and keys the random streams: scene `index` of `split` draws from
[seed, split, index, stream], so it is the same scene whatever else was sampled.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from typing import Any

import numpy as np
from PIL import Image

from . import language, pope, qa
from .config import INVERSE, WorldConfig
from .glyphs import CLASSES, COLORS, PLURALS
from .language import NUMBERS, QUESTION_TEMPLATES, YES_NO_TEMPLATES
from .render import draw
from .scene import RELATIONS, SPLITS, Sample, Scene, SceneSampler

# The per-image random streams: the scene's ground truth, and its pixels (occluders, noise).
SCENE_STREAM = 0
PIXEL_STREAM = 1
# The training scenes the class frequency is estimated on (the weights of absent classes in
# existence questions).
CLASS_FREQUENCY_SCENES = 2000


class World:
    """The synthetic world: `World(seed=0, **knobs)`; see `WorldConfig` for the knobs."""

    QUESTION_TYPES = ("existence", "attribute", "count", "relation")
    # Training questions may also ask colour and count as yes/no questions (world-qa's wording), each a
    # balanced draw of the true value (yes) or another one (no).
    TRAIN_QUESTION_TYPES = (*QUESTION_TYPES, "attribute_yes_no", "count_yes_no")

    def __init__(self, seed: int = 0, **knobs: Any) -> None:
        valid = {f.name for f in dataclasses.fields(WorldConfig)}
        unknown = sorted(set(knobs) - valid)
        if unknown:
            raise TypeError(f"unknown world knob(s) {unknown}; valid knobs: {sorted(valid)}")
        self.seed = seed
        self.config = WorldConfig(**knobs)
        self._sampler = SceneSampler(self.config)

    def _rng(self, split: str, index: int, stream: int) -> np.random.Generator:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        return np.random.default_rng([self.seed, SPLITS.index(split), index, stream])

    # ---------------------------------------------------------------- scenes and pixels
    def scene(self, split: str, index: int) -> Scene:
        """The ground truth of image `index` of `split` (deterministic)."""
        return self._sampler(split, index, self._rng(split, index, SCENE_STREAM))

    def render_array(self, scene: Scene) -> np.ndarray:
        """The image as a (64, 64, 3) uint8 array."""
        return draw(scene, self.config.faint_level, self._rng(scene.split, scene.index, PIXEL_STREAM))

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
        """The scene's true caption in `style` ("detailed" or "short"); see `language.caption_parts`."""
        return language.caption_parts(scene, style).render(style)

    def vocabulary(self) -> list[str]:
        """Every word the world's captions, questions and answers can use (lower case)."""
        return language.vocabulary(self.config.scenes)

    @functools.cached_property
    def _class_frequency(self) -> np.ndarray:
        counts = Counter(c for i in range(CLASS_FREQUENCY_SCENES) for c in self.scene("train", i).classes)
        freq = np.array([counts[c] + 1 for c in CLASSES], dtype=float)
        return freq / freq.sum()

    def class_frequency(self) -> np.ndarray:
        """How often each class appears in training images (estimated on 2,000 of them, cached)."""
        return self._class_frequency

    def question(self, scene: Scene, qtype: str, rng: np.random.Generator,
                 relation_inverse: float = 0.0) -> dict[str, str] | None:
        """One question of type `qtype` with its exact answer, or None if the scene has none.

        Existence answers are 'yes' with probability `yes_bias`; an absent class is drawn in
        proportion to its training frequency, so that every class is asked about with both answers
        in the same proportion (uniform negatives would teach 'frequent class -> yes'). A relation
        question answered 'no' asks the inverse of the true relation with probability
        `relation_inverse`, else one of the other three (`wrong_relation`).
        """
        present = scene.classes
        absent = [c for c in CLASSES if c not in present]
        counts = scene.counts()
        template = QUESTION_TEMPLATES.get(qtype)
        if qtype == "existence":
            if absent and rng.random() >= self.config.yes_bias:
                p = self.class_frequency()[[CLASSES.index(c) for c in absent]]
                cls, answer = absent[rng.choice(len(absent), p=p / p.sum())], "no"
            else:
                cls, answer = present[rng.integers(len(present))], "yes"
            return {"type": qtype, "question": template.format(cls), "answer": answer}
        if qtype == "attribute":
            singles = [o for o in scene.objects if counts[o.cls] == 1]
            if not singles:
                return None
            o = singles[rng.integers(len(singles))]
            return {"type": qtype, "question": template.format(o.cls), "answer": o.color}
        if qtype == "attribute_yes_no":
            singles = [o for o in scene.objects if counts[o.cls] == 1]
            if not singles:
                return None
            o = singles[rng.integers(len(singles))]
            color, answer = o.color, "yes"
            if rng.random() < 0.5:
                others = [c for c in COLORS if c != o.color]
                color, answer = others[rng.integers(len(others))], "no"
            return {"type": qtype, "question": YES_NO_TEMPLATES["attribute"].format(o.cls, color), "answer": answer}
        if qtype == "count_yes_no":
            cls = present[rng.integers(len(present))]
            n, answer = counts[cls], "yes"
            if rng.random() < 0.5:
                others = [m for m in range(1, max(qa.MAX_ASKED_COUNT, n + 1) + 1) if m != n]
                n, answer = others[rng.integers(len(others))], "no"
            if scene.split == "train":  # trained to point at each object first (language.count_answer)
                answer = language.count_answer([o for o in scene.objects if o.cls == cls], answer)
            return {"type": qtype, "question": qa.count_question(cls, n), "answer": answer}
        if qtype == "count":
            pool = present if (not absent or rng.random() < 0.5) else absent
            cls = pool[rng.integers(len(pool))]
            answer = NUMBERS[counts.get(cls, 0)]
            if scene.split == "train":
                answer = language.count_answer([o for o in scene.objects if o.cls == cls])
            return {"type": qtype, "question": template.format(PLURALS[cls]), "answer": answer}
        if qtype == "relation":
            rels = scene.relations()
            if not rels:
                return None
            a, rel, b = rels[rng.integers(len(rels))]
            answer = "yes"
            if rng.random() < 0.5:
                # drawn only when asked for, so that the default data stays what it was
                inverse = relation_inverse and rng.random() < relation_inverse
                rel, answer = INVERSE[rel] if inverse else self.wrong_relation(rel, rng), "no"
            if scene.split == "train":  # trained to say both places and their relation first (RELATION_ANSWER)
                objs = {o.cls: o for o in scene.objects}  # a and b appear once each
                answer = language.relation_answer(objs[a], objs[b], answer)
            return {"type": qtype, "question": template.format(a, rel, b), "answer": answer}
        raise ValueError(f"unknown question type {qtype!r}; use one of {self.TRAIN_QUESTION_TYPES}")

    def wrong_relation(self, true: str, rng: np.random.Generator) -> str:
        """The relation a training question asks about when its answer is 'no': one of the other three, uniformly
        (studies/recipe_balanced_relations.py replaces this draw to test one weighted by frequency)."""
        return [r for r in RELATIONS if r != true][rng.integers(len(RELATIONS) - 1)]

    def questions(self, scene: Scene, rng: np.random.Generator) -> list[dict[str, str]]:
        """One question of each type the scene allows (existence, attribute, count, relation)."""
        return [q for t in self.QUESTION_TYPES if (q := self.question(scene, t, rng)) is not None]

    # ---------------------------------------------------------------- POPE
    def pope(self, split: str = "adversarial", n_images: int = 500, image_split: str = "test",
             sample_num: int = 3) -> list[dict[str, Any]]:
        """POPE questions built from ground truth exactly as POPE's `utils.pope` builds them.

        Images with at least `sample_num` distinct classes are taken in index order. Per image, the
        first `sample_num` ground-truth objects each give a 'yes' question, each followed by a 'no'
        question about an absent object chosen at random, by popularity (object frequency over the
        images) or adversarially (the absent object that co-occurs most with that positive object).
        Question ids run 1, 2, 3... Each record has `question_id`, `image` (PIL), `image_id`,
        `text`, `label`, `object` and `breaks_bias`.
        """
        return pope.pope_questions(self, split, n_images, image_split, sample_num)

    def qa(self, kind: str, n_images: int = 500, image_split: str = "test") -> list[dict[str, Any]]:
        """AMBER-style questions of `kind` (existence, attribute, count or relation) with exact answers:
        per image a balanced yes/no pair about one item, and an open question for colour and count,
        each marked with the prior's answer and whether the item breaks a bias (`world.qa`)."""
        return qa.qa_questions(self, kind, n_images, image_split)

    def pope_scenes(self, n_images: int, image_split: str = "test", sample_num: int = 3) -> list[Scene]:
        """The scenes `pope` asks about: the first `n_images` with at least `sample_num` classes."""
        return pope.pope_scenes(self, n_images, image_split, sample_num)


__all__ = ["CLASS_FREQUENCY_SCENES", "PIXEL_STREAM", "SCENE_STREAM", "World"]
