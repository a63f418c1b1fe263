"""The world's language: one grammar for captions and questions, and its reader.

A caption is data first (`CaptionParts`: noun phrases and relation sentences), then text
(`CaptionParts.render`). `World.caption` renders the parts of the truth; the hallucination engine
edits the parts and renders them the same way; `parse_world_caption` reads a caption (a model's
output, say) back into parts. So there is one grammar, and everything it writes stays inside the
built-in model's vocabulary (`vocabulary`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .glyphs import CLASSES, COLORS, PLURALS
from .scene import RELATIONS, Scene, WorldObject, relation

NUMBERS = ("zero", "one", "two", "three", "four", "five")
CAPTION_STYLES = ("detailed", "short")
CAPTION_PROMPTS = {
    "detailed": "Describe the image in detail.",
    "short": "Describe the image briefly.",
}

# Sentences of a caption.
DETAILED_SENTENCE = "the image shows {}."  # the listed objects
SHORT_SENTENCE = "{} {} scene with {}."  # article, scene type, the listed objects
RELATION_SENTENCE = "the {} is {} the {}."  # a, relation, b

# Questions; the existence question is POPE's own.
POPE_TEMPLATE = "Is there a {} in the image?"
QUESTION_TEMPLATES = {
    "existence": POPE_TEMPLATE,  # class
    "attribute": "What color is the {}?",  # class
    "count": "How many {} are there?",  # plural
    "relation": "Is the {} {} the {}?",  # a, relation, b
}
# The yes/no questions of the discriminative benchmarks (world-qa) beside those above, in the same words.
YES_NO_TEMPLATES = {
    "existence": POPE_TEMPLATE,  # class
    "attribute": "Is the {} {}?",  # class, colour
    "count_one": "Is there one {}?",  # class
    "count": "Are there {} {}?",  # number, plural
    "relation": QUESTION_TEMPLATES["relation"],  # a, relation, b
}


# ---------------------------------------------------------------------------- words
def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(cls: str, n: int, adjectives: Sequence[str] = ()) -> str:
    """'a small red fork', 'an orange ball', 'two cups'."""
    words = " ".join([*adjectives, PLURALS[cls] if n > 1 else cls])
    return f"{NUMBERS[n] if n > 1 else article(words)} {words}"


def join_phrases(items: Sequence[str]) -> str:
    """'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_WORD = re.compile(r"\w+|[^\w\s]+")


def tokenize_words(text: str) -> list[str]:
    """The word split of the built-in tokenizer (lower case; punctuation apart)."""
    return _WORD.findall(text.lower())


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of each word of `tokenize_words(text)`, with its character offsets in `text`."""
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def vocabulary(scene_types: Iterable[str]) -> list[str]:
    """Every word the grammar can write, in captions, questions and answers (lower case)."""
    templates = [DETAILED_SENTENCE, SHORT_SENTENCE, RELATION_SENTENCE, *QUESTION_TEMPLATES.values(),
                 *YES_NO_TEMPLATES.values(), *CAPTION_PROMPTS.values()]
    texts = [*templates, "a an small and ,", "yes no", *scene_types, *CLASSES, *PLURALS.values(), *COLORS, *NUMBERS,
             *RELATIONS]
    words: set[str] = set()
    for t in texts:
        words.update(tokenize_words(t.replace("{}", " ")))
    return sorted(words)


# ---------------------------------------------------------------------------- captions as data
@dataclass
class Phrase:
    """One noun phrase of a world caption: `n` objects of class `cls`, with optional adjectives."""

    cls: str
    n: int
    small: bool = False
    color: str | None = None

    def render(self) -> str:
        return noun_phrase(self.cls, self.n, (["small"] if self.small else []) + ([self.color] if self.color else []))


@dataclass
class CaptionParts:
    """A world caption as data: the phrases in order and the relation sentences (a, relation, b).
    `scene_type` is only said in the short style."""

    scene_type: str
    phrases: list[Phrase]
    relations: list[tuple[str, str, str]] = field(default_factory=list)

    def render(self, style: str = "detailed") -> str:
        check_style(style)
        listed = join_phrases([p.render() for p in self.phrases]) if self.phrases else ""
        if style == "short":
            return SHORT_SENTENCE.format(article(self.scene_type), self.scene_type, listed)
        return " ".join([DETAILED_SENTENCE.format(listed), *(RELATION_SENTENCE.format(*r) for r in self.relations)])


def check_style(style: str) -> None:
    if style not in CAPTION_STYLES:
        raise ValueError(f"unknown caption style {style!r}; use 'short' or 'detailed'")


def objects_by_class(scene: Scene) -> dict[str, list[WorldObject]]:
    """The scene's objects grouped by class, the classes in reading order (row by row) of their
    first object: the order captions list them in."""
    groups: dict[str, list[WorldObject]] = {}
    for o in sorted(scene.objects, key=lambda o: (o.row, o.col)):
        groups.setdefault(o.cls, []).append(o)
    return groups


def caption_parts(scene: Scene, style: str = "detailed") -> CaptionParts:
    """The true caption of `scene` as data. Objects are listed by class in reading order; the
    detailed style adds "small" (when all of a class are small), the colour (when they share one)
    and up to two relations, each between a single object and the next one."""
    check_style(style)
    detailed = style == "detailed"
    groups = objects_by_class(scene)
    phrases = []
    for cls, objs in groups.items():
        colors = {o.color for o in objs}
        phrases.append(Phrase(cls, len(objs), small=detailed and all(o.size == "small" for o in objs),
                              color=next(iter(colors)) if detailed and len(colors) == 1 else None))
    relations = []
    if detailed:
        singles = [cls for cls, g in groups.items() if len(g) == 1]
        relations = [(a, relation(groups[a][0], groups[b][0]), b) for a, b in zip(singles, singles[1:3])]
    return CaptionParts(scene.scene_type, phrases, relations)


# ---------------------------------------------------------------------------- reading a caption back
_DETERMINERS = {"a": 1, "an": 1, **{w: i for i, w in enumerate(NUMBERS) if i >= 2}}
_NOUNS = {c: (c, False) for c in CLASSES} | {PLURALS[c]: (c, True) for c in CLASSES}


def parse_world_caption(text: str) -> tuple[CaptionParts, str] | None:
    """(parts, style) of a caption written in the world's grammar, or None if it is not.

    Models' captions come back as words and punctuation (the built-in tokenizer decodes to
    "a red fork , a knife ."); spacing and case do not matter.
    """
    words = tokenize_words(text)
    sentences, current = [], []
    for w in words:
        current.append(w)
        if w == ".":
            sentences.append(current[:-1])
            current = []
    if current or not sentences:
        return None  # unfinished last sentence
    first = sentences[0]
    if first[:3] == ["the", "image", "shows"]:
        style, listed, scene_type = "detailed", first[3:], ""
    elif len(first) >= 4 and first[2:4] == ["scene", "with"] and first[0] in ("a", "an"):
        style, listed, scene_type = "short", first[4:], first[1]
    else:
        return None
    phrases = _parse_list(listed)
    if phrases is None:
        return None
    relations = []
    for s in sentences[1:]:
        rel = " ".join(s[3:-2])
        if (style != "detailed" or len(s) < 6 or s[0] != "the" or s[2] != "is" or s[-2] != "the"
                or rel not in RELATIONS or s[1] not in CLASSES or s[-1] not in CLASSES):
            return None
        relations.append((s[1], rel, s[-1]))
    return CaptionParts(scene_type, phrases, relations), style


def _parse_list(words: list[str]) -> list[Phrase] | None:
    chunks, current = [], []
    for w in words:
        if w in (",", "and"):
            chunks.append(current)
            current = []
        else:
            current.append(w)
    chunks.append(current)
    phrases = []
    for c in chunks:
        if len(c) < 2 or c[0] not in _DETERMINERS or c[-1] not in _NOUNS:
            return None
        n = _DETERMINERS[c[0]]
        cls, plural = _NOUNS[c[-1]]
        adjectives = c[1:-1]
        small = bool(adjectives) and adjectives[0] == "small"
        rest = adjectives[1:] if small else adjectives
        if len(rest) > 1 or (rest and rest[0] not in COLORS) or plural != (n > 1):
            return None
        phrases.append(Phrase(cls, n, small, rest[0] if rest else None))
    return phrases


__all__ = [
    "CAPTION_PROMPTS", "CAPTION_STYLES", "DETAILED_SENTENCE", "NUMBERS", "POPE_TEMPLATE", "QUESTION_TEMPLATES",
    "RELATION_SENTENCE", "SHORT_SENTENCE", "CaptionParts", "Phrase", "article", "caption_parts", "check_style",
    "join_phrases", "noun_phrase", "objects_by_class", "parse_world_caption", "tokenize_words", "vocabulary",
    "word_spans", "YES_NO_TEMPLATES",
]
