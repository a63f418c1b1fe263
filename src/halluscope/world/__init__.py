"""The lab: a procedural visual world with exact ground truth and knobs for the biases behind
hallucination.

An image is a 4x4 grid of 16 px cells on a 64x64 canvas; each object is a coloured glyph inside
one cell, so it falls inside one vision patch of the built-in model. The world is deterministic:
scene `i` of split `s` under seed `k` is always the same scene, whatever else was sampled.

The bias knobs (`WorldConfig`) reproduce the reasons real VLMs hallucinate:
- co-occurrence pairs (a fork usually comes with a knife) and scene types (kitchen, street...),
  which teach the language model to expect objects that are not there;
- attribute priors (a tree is usually green), which teach it to say the usual colour;
- spatial priors (a fork is usually left of its knife) and count priors (lamps usually come in twos),
  which teach it the usual side and number;
- a yes-bias in the training answers;
- visual uncertainty (small, faint, half-hidden objects, pixel noise), where priors win over pixels.
Test images can break the biases on purpose (a fork without its knife, a blue tree, a fork right of its
knife, a lone lamp).

Modules: `config` (geometry and knobs), `scene` (ground truth and its sampling), `render` (pixels),
`language` (the caption and question grammar, and its reader), `claims` (what a caption asserts, judged),
`pope` (POPE construction), `qa` (yes/no and open questions of every kind), `world`
(the `World` that ties them to a seed).
"""

from .config import CELL, GRID, IMAGE_SIZE, WorldConfig
from .glyphs import CLASSES, COLORS, PLURALS
from .language import (
    CAPTION_PROMPTS, CAPTION_STYLES, NUMBERS, POPE_TEMPLATE, QUESTION_TEMPLATES, CaptionParts, Phrase, article,
    caption_parts, join_phrases, noun_phrase, objects_by_class, parse_world_caption, place, tokenize_words,
)
from .pope import POPE_SPLITS
from .qa import QA_KINDS
from .scene import RELATIONS, SPLITS, Sample, Scene, WorldObject, relation
from .world import World

__all__ = [
    "CAPTION_PROMPTS", "CAPTION_STYLES", "CELL", "CLASSES", "COLORS", "GRID", "IMAGE_SIZE", "NUMBERS", "PLURALS",
    "POPE_SPLITS", "POPE_TEMPLATE",
    "QA_KINDS", "QUESTION_TEMPLATES", "RELATIONS", "SPLITS", "CaptionParts", "Phrase", "Sample",
    "Scene", "World", "WorldConfig", "WorldObject", "article", "caption_parts", "join_phrases", "noun_phrase",
    "objects_by_class", "parse_world_caption", "place", "relation", "tokenize_words",
]
