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

from .config import DEFAULT_SCENES, GRID
from .glyphs import CLASSES, COLORS, PLURALS
from .scene import RELATIONS, Scene, WorldObject, relation

# The version of the text the grammar writes, part of a cached built-in model's name (`zoo.tiny.tiny_recipe`): a
# change to what captions or training answers say makes it 1 higher, so that no model trained on the old text is
# loaded for the new. 2: places before relations, captions in CAPTION_ORDER, relation answers with places; 3: count
# answers with places.
GRAMMAR_VERSION = 3

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
PLACE_SENTENCE = "{} , {}."  # the places of a relation sentence's two objects, said just before it

# A place is a cell of the image's grid, its row's number word then its column's ("one three": top row, third
# column), as grounded captions give each object's location (Kosmos-2's location tokens): the built-in model says
# where two objects are before it relates them, so that a relation is read off two places it has written rather
# than fetched from two objects in one step, which the model does not do (docs/studies/tiny-recipe.md).
PLACE_WORDS = NUMBERS[1 : GRID + 1]  # one to four

# The order captions list classes in: one class of each (default) scene type in turn (fork, car, tree, book,
# knife, ...), so that the class named next is usually not one the scene suggests. In reading order (row by row)
# the model must skip a class already named when its second object comes up, and repeated a phrase in about a
# third of its captions; in scene order it inserts the class the scene suggests (docs/studies/tiny-recipe.md).
CAPTION_ORDER = tuple(cls for turn in zip(*DEFAULT_SCENES.values()) for cls in turn)

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
# The training answer to a relation question: both objects' places, the relation they make, then the verdict
# ("one three , two one , below , no"); world-qa generates relation answers and reads the verdict off the end.
RELATION_ANSWER = "{} , {} , {} , {}"  # place of a, place of b, their relation, yes/no


# ---------------------------------------------------------------------------- words
def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(cls: str, n: int, adjectives: Sequence[str] = ()) -> str:
    """'a small red fork', 'an orange ball', 'two cups'."""
    words = " ".join([*adjectives, PLURALS[cls] if n > 1 else cls])
    return f"{NUMBERS[n] if n > 1 else article(words)} {words}"


def place(obj: WorldObject) -> str:
    """The object's place: its row's and its column's number words ("one three")."""
    return f"{PLACE_WORDS[obj.row]} {PLACE_WORDS[obj.col]}"


def parse_place(text: str) -> tuple[int, int] | None:
    """(row, column) of a place as `place` writes it ("one three" -> (0, 2)), or None if it is not one."""
    words = text.split()
    if len(words) != 2 or not all(w in PLACE_WORDS for w in words):
        return None
    return PLACE_WORDS.index(words[0]), PLACE_WORDS.index(words[1])


def relation_answer(a: WorldObject, b: WorldObject, answer: str) -> str:
    """The training answer to "Is the A r the B?" about objects `a` and `b`: places, relation, verdict."""
    return RELATION_ANSWER.format(place(a), place(b), relation(a, b), answer)


def count_answer(objs: Sequence[WorldObject], verdict: str | None = None) -> str:
    """The training answer to a count question about `objs` (all the objects of the asked class): it points before
    it counts, their places in reading order, their number, and `verdict` for a yes/no question ("two three , four
    one , two , no"; "zero" where there is none). Answering with the number alone, the model read a lone lamp as
    the two the prior expects four times in five; pointing first, one to two times in five
    (docs/studies/tiny-recipe.md)."""
    steps = [place(o) for o in sorted(objs, key=lambda o: (o.row, o.col))] + [NUMBERS[len(objs)]]
    return " , ".join(steps + ([verdict] if verdict else []))


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
    texts = [*templates, "a an small and ,", "yes no", *PLACE_WORDS, *scene_types, *CLASSES, *PLURALS.values(),
             *COLORS, *NUMBERS, *RELATIONS]
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
    """A world caption as data: the phrases in order and the relation sentences (a, relation, b), each
    said after the sentence of its two objects' places where `places` has them ((a, b) -> (place of a, place
    of b)). `scene_type` is only said in the short style."""

    scene_type: str
    phrases: list[Phrase]
    relations: list[tuple[str, str, str]] = field(default_factory=list)
    places: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def render(self, style: str = "detailed") -> str:
        check_style(style)
        listed = join_phrases([p.render() for p in self.phrases]) if self.phrases else ""
        if style == "short":
            return SHORT_SENTENCE.format(article(self.scene_type), self.scene_type, listed)
        sentences = [DETAILED_SENTENCE.format(listed)]
        for a, r, b in self.relations:
            if (a, b) in self.places:
                sentences.append(PLACE_SENTENCE.format(*self.places[a, b]))
            sentences.append(RELATION_SENTENCE.format(a, r, b))
        return " ".join(sentences)


def check_style(style: str) -> None:
    if style not in CAPTION_STYLES:
        raise ValueError(f"unknown caption style {style!r}; use 'short' or 'detailed'")


def objects_by_class(scene: Scene) -> dict[str, list[WorldObject]]:
    """The scene's objects grouped by class, the classes in `CAPTION_ORDER` (the order captions list them in),
    each class's objects in reading order (row by row)."""
    groups: dict[str, list[WorldObject]] = {}
    for o in sorted(scene.objects, key=lambda o: (o.row, o.col)):
        groups.setdefault(o.cls, []).append(o)
    return {cls: groups[cls] for cls in CAPTION_ORDER if cls in groups}


def caption_parts(scene: Scene, style: str = "detailed") -> CaptionParts:
    """The true caption of `scene` as data. Objects are listed by class in `CAPTION_ORDER`; the
    detailed style adds "small" (when all of a class are small), the colour (when they share one)
    and up to two relations, each between a single object and the next one, each after its two places."""
    check_style(style)
    detailed = style == "detailed"
    groups = objects_by_class(scene)
    phrases = []
    for cls, objs in groups.items():
        colors = {o.color for o in objs}
        phrases.append(Phrase(cls, len(objs), small=detailed and all(o.size == "small" for o in objs),
                              color=next(iter(colors)) if detailed and len(colors) == 1 else None))
    singles = [g[0] for g in groups.values() if len(g) == 1] if detailed else []
    pairs = list(zip(singles, singles[1:3]))
    return CaptionParts(scene.scene_type, phrases, [(a.cls, relation(a, b), b.cls) for a, b in pairs],
                        {(a.cls, b.cls): (place(a), place(b)) for a, b in pairs})


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
    relations, places, place_before = [], {}, None
    for s in sentences[1:]:
        if style == "detailed" and place_before is None and is_place_sentence(s):
            place_before = (" ".join(s[:2]), " ".join(s[3:]))
            continue
        rel = " ".join(s[3:-2])
        if (style != "detailed" or len(s) < 6 or s[0] != "the" or s[2] != "is" or s[-2] != "the"
                or rel not in RELATIONS or s[1] not in CLASSES or s[-1] not in CLASSES):
            return None
        relations.append((s[1], rel, s[-1]))
        if place_before is not None:
            places[s[1], s[-1]] = place_before
            place_before = None
    if place_before is not None:
        return None  # a place sentence without its relation
    return CaptionParts(scene_type, phrases, relations, places), style


def is_place_sentence(words: Sequence[str]) -> bool:
    """Whether a sentence's words (without its '.') are two places: "one three , four two"."""
    return len(words) == 5 and words[2] == "," and all(w in PLACE_WORDS for w in (*words[:2], *words[3:]))


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
    "CAPTION_ORDER", "CAPTION_PROMPTS", "CAPTION_STYLES", "DETAILED_SENTENCE", "GRAMMAR_VERSION", "NUMBERS",
    "PLACE_SENTENCE", "PLACE_WORDS", "POPE_TEMPLATE", "QUESTION_TEMPLATES", "RELATION_ANSWER", "RELATION_SENTENCE",
    "SHORT_SENTENCE", "CaptionParts", "Phrase", "YES_NO_TEMPLATES", "article", "caption_parts", "check_style",
    "count_answer", "is_place_sentence", "join_phrases", "noun_phrase", "objects_by_class", "parse_world_caption",
    "parse_place", "place", "relation_answer", "tokenize_words", "vocabulary", "word_spans",
]
