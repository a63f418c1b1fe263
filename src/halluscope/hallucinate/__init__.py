"""Hallucinated text on purpose: mirrors of a correct caption that keep its style and (almost) its
length but contradict the image in one tagged way, minimal corrections, and LRV-style negative
instructions.

Kinds of hallucination (`KINDS`):
- "object": an object swapped for one that often co-occurs with it (a knife becomes a fork);
- "attribute": a wrong colour (or size) for an object that is there;
- "count": a wrong number of an object that is there;
- "relation": a wrong spatial relation between two objects that are there;
- "added": an extra object that is not there, one that co-occurs with what is.

Three engines, one module each:
- `world`: `world_hallucinations(world, scene)` on the world, from the scene's exact ground truth,
  written with the world's own grammar (`halluscope.world.CaptionParts`), so every word stays in
  the built-in model's vocabulary; `world_correction` goes the other way (a model's caption -> its
  minimal correction, for RLHF-V-style preference pairs);
- `rules`: `RuleHallucinator` on real captions, word rules over the 80 COCO categories, with the
  built-in co-occurrence table (`cooccurrence`) or one computed from the ground-truth objects the
  user passes;
- `llm`: `LLMHallucinator` prompts any Hugging Face causal LM to rewrite captions (HACL's approach).

`negatives`: LRV-style negative instructions (questions about absent objects or wrong attributes
with a refusal as the answer): `world_negative_instructions`, `negative_instructions`.
"""

from ..world import CaptionParts, Phrase, caption_parts, parse_world_caption
from .base import KINDS, Hallucination
from .cooccurrence import COCO_CATEGORIES, COCO_COOCCURRENCE, cooccurrence_table
from .llm import LLM_INSTRUCTIONS, LLM_PROMPT, LLMHallucinator
from .negatives import POPE_COLOR_TEMPLATE, negative_instructions, world_negative_instructions
from .rules import COLOR_WORDS, NUMBER_WORDS, RELATION_OPPOSITES, SIZE_OPPOSITES, RuleHallucinator
from .world import OPPOSITE, cooccurring, world_correction, world_hallucinations

__all__ = [
    "COCO_CATEGORIES", "COCO_COOCCURRENCE", "COLOR_WORDS", "KINDS", "LLM_INSTRUCTIONS", "LLM_PROMPT", "NUMBER_WORDS",
    "OPPOSITE", "POPE_COLOR_TEMPLATE", "RELATION_OPPOSITES", "SIZE_OPPOSITES", "CaptionParts", "Hallucination",
    "LLMHallucinator", "Phrase", "RuleHallucinator", "caption_parts", "cooccurrence_table", "cooccurring",
    "negative_instructions", "parse_world_caption", "world_correction", "world_hallucinations",
    "world_negative_instructions",
]
