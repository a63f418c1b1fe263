"""The lab: a procedural visual world with exact ground truth and bias knobs."""

from .core import (
    CAPTION_PROMPTS, POPE_SPLITS, POPE_TEMPLATE, SPLITS, Sample, Scene, World, WorldConfig,
    WorldObject, tokenize_words,
)
from .glyphs import CLASSES, COLORS, PLURALS

__all__ = [
    "CAPTION_PROMPTS", "CLASSES", "COLORS", "PLURALS", "POPE_SPLITS", "POPE_TEMPLATE", "SPLITS",
    "Sample", "Scene", "World", "WorldConfig", "WorldObject", "tokenize_words",
]
