"""The stages on the synthetic world, where every claim has an exact verdict.

- extraction: the world's claim parser (`world.claims.parse_claims`), exact on grammatical captions and
  lenient on broken ones;
- questions: the world's own question templates (`world.language`), so the built-in model is asked in
  the words it was trained on: "Is there a fork in the image?", "Is the fork red?", "Are there two
  forks?", "Is the fork left of the cup?", and for a fix "What color is the fork?", "How many forks are
  there?";
- the oracle: answers those questions from the scene's truth (the ceiling of every later stage);
- verdicts: Woodpecker's (a refuted claim is fixed from the short answer where it gives a better value,
  else deleted; a refuted object takes its colour, number and relations with it) and LogicCheck's (an
  object whose answers do not close their loops goes);
- rewriting: edits the caption as data (`CaptionParts`) and renders it with the one grammar, so the
  corrected caption is read by the same parser and stays inside the built-in model's vocabulary.
"""

from __future__ import annotations

from typing import Any

from ..tasks.world import parse_open_answer as parse_open  # open answers read as world-qa reads them
from ..world import (
    NUMBERS, PLURALS, QUESTION_TEMPLATES, RELATIONS, CaptionParts, Phrase, parse_world_caption, relation,
    tokenize_words,
)
from ..world.claims import Claim, parse_claims
from ..world.language import RELATION_SENTENCE, YES_NO_TEMPLATES
from ..world.qa import count_question
from .stages import Answer, Item, Question, Verdict

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


# ---------------------------------------------------------------------------- 1. extraction
class WorldExtractor:
    """The world's claim parser: every object, attribute (colour, size), count and relation claim."""

    def extract(self, caption: str) -> tuple[list[Claim], list[tuple[int, int]]]:
        parsed = parse_claims(caption)
        return parsed.claims, parsed.unparsed


# ---------------------------------------------------------------------------- 2. questions
def check_question(i: int, c: Claim) -> Question | None:
    """The yes/no question whose yes supports claim `c` (index `i`), in the world's templates."""
    if c.kind == "object":
        return Question(i, "existence", "yes_no", YES_NO_TEMPLATES["existence"].format(c.cls), c.cls)
    if c.kind == "attribute":
        kind = "attribute" if c.attribute == "color" else "size"
        return Question(i, kind, "yes_no", YES_NO_TEMPLATES["attribute"].format(c.cls, c.value), c.cls, c.value,
                        n=c.n)
    if c.kind == "count":
        if not 0 <= c.value < len(NUMBERS):
            return None
        return Question(i, "count", "yes_no", count_question(c.cls, c.value), c.cls, c.value)
    if c.kind == "relation":
        rel, other = c.value
        return Question(i, "relation", "yes_no", YES_NO_TEMPLATES["relation"].format(c.cls, rel, other), c.cls, rel,
                        other)
    return None


def colour_question(i: int, cls: str, role: str) -> Question:
    return Question(i, "attribute", "open", QUESTION_TEMPLATES["attribute"].format(cls), cls, role=role)


def count_open_question(i: int, cls: str, role: str) -> Question:
    return Question(i, "count", "open", QUESTION_TEMPLATES["count"].format(PLURALS[cls]), cls, role=role)


def relation_choices(i: int, c: Claim) -> list[Question]:
    """"Is the A r the B?" for every relation r: the model picks one, so its yes-bias cancels."""
    return [Question(i, "relation", "yes_no", YES_NO_TEMPLATES["relation"].format(c.cls, r, c.value[1]), c.cls, r,
                     c.value[1], role="choice") for r in RELATIONS]


def said_yes(answer: Answer | None, threshold: float) -> bool | None:
    """Whether an answer to a yes/no question is yes (p(yes) >= threshold), None without an answer."""
    if answer is None:
        return None
    if answer.p_yes is not None:
        return answer.p_yes >= threshold
    return answer.text.strip().lower() == "yes"


class WoodpeckerQuestions:
    """Woodpecker's questions in the world's words. An object: "Is there a X in the image?" (yes/no). A
    colour and a number: the open question whose answer is compared with the claim, as Woodpecker compares
    its VQA answers ("What color is the X?", "How many Xs are there?"); where the answer names no colour
    or number, the yes/no question follows ("Is the X c?", "Are there n Xs?"). A relation: the yes/no
    question for each of the four relations, the likeliest wins (one question would meet the model's
    yes-bias). "small": "Is the X small?" (with `check_size`)."""

    def __init__(self, threshold: float = 0.5, check_size: bool = True, fix: bool = True) -> None:
        self.threshold, self.check_size, self.fix = threshold, check_size, fix

    def first(self, claims: list[Claim]) -> list[Question]:
        out = []
        for i, c in enumerate(claims):
            if c.kind == "attribute" and c.attribute == "color":
                out.append(colour_question(i, c.cls, "answer"))
            elif c.kind == "count":
                out.append(count_open_question(i, c.cls, "answer"))
            elif c.kind == "relation":
                out += relation_choices(i, c) if c.cls != c.value[1] else []  # self: refuted by its words
            else:
                q = check_question(i, c)
                if q is not None and (q.kind != "size" or self.check_size):
                    out.append(q)
        return out

    def then(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Question]:
        out = []
        for q, a in zip(questions, answers):
            if q.role != "answer" or a is None:
                continue
            c = claims[q.claim]
            said = parse_open(q.kind, a.text)
            follow = check_question(q.claim, c)
            if follow is None:
                continue
            if not said:  # no value named: the yes/no question decides
                out.append(follow)
            elif (said if q.kind == "attribute" else NUMBERS.index(said)) != c.value and said != "zero":
                # the answer contradicts the claim: ask yes/no of both values; the likelier one stands
                other = check_question(q.claim, Claim(c.kind, c.text, c.span, c.cls, said if q.kind == "attribute"
                                                      else NUMBERS.index(said), c.attribute, c.n))
                follow.role = other.role = "confirm"
                out += [follow, other]
        return out


class LogicCheckQuestions:
    """LogicCheckGPT's loops in the world's words. Per object claim X, first the object -> attribute
    questions "What color is the X?" and "How many Xs are there?"; then the questions that close each loop
    from the answer back to the object: "Is the X c?" and "Are there n Xs?". A real object's answers
    agree with each other; a hallucinated one's often do not."""

    def first(self, claims: list[Claim]) -> list[Question]:
        out = []
        for i, c in enumerate(claims):
            if c.kind == "object":
                out += [colour_question(i, c.cls, "loop"), count_open_question(i, c.cls, "loop")]
        return out

    def then(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Question]:
        out = []
        for q, a in zip(questions, answers):
            if a is None:
                continue
            said = parse_open(q.kind, a.text)
            if q.kind == "attribute" and said:
                out.append(Question(q.claim, "attribute", "yes_no", YES_NO_TEMPLATES["attribute"].format(q.cls, said),
                                    q.cls, said, role="close"))
            elif q.kind == "count" and said and said != "zero":
                n = NUMBERS.index(said)
                out.append(Question(q.claim, "count", "yes_no", count_question(q.cls, n), q.cls, n, role="close"))
        return out


# ---------------------------------------------------------------------------- 3. the oracle
class OracleValidator:
    """Answers every question from the scene's exact truth: the ceiling of validation. A yes/no question
    is answered as `claims.judge` reads its claim (a colour of a phrase of n objects: at least min(n, count)
    of them have it); "What color is the X?" with the colour all the class's objects share ("" where they
    differ, as a caption says no colour then)."""

    name = "oracle"

    def answer(self, items: list[Item], questions: list[tuple[int, Question]]) -> list[Answer | None]:
        out: list[Answer | None] = []
        for i, q in questions:
            scene = items[i].scene
            if scene is None:
                raise ValueError("the oracle validator answers from the world's truth; this caption has no scene "
                                 "(use validator 'self' or 'detector' on real images)")
            out.append(truth_answer(scene, q))
        return out


def truth_answer(scene, q: Question) -> Answer:
    objs = [o for o in scene.objects if o.cls == q.cls]
    if q.form == "open":
        if q.kind == "attribute":
            colours = {o.color for o in objs}
            return Answer(next(iter(colours)) if len(colours) == 1 else "")
        return Answer(NUMBERS[len(objs)] if len(objs) < len(NUMBERS) else str(len(objs)))
    if q.kind == "existence":
        yes = bool(objs)
    elif q.kind in ("attribute", "size"):  # as `claims.judge` reads a phrase of n objects
        has = sum((o.color == q.value) if q.kind == "attribute" else (o.size == "small") for o in objs)
        yes = bool(objs) and has >= max(1, min(q.n, len(objs)))
    elif q.kind == "count":
        yes = len(objs) == q.value
    else:  # relation
        others = [o for o in scene.objects if o.cls == q.other]
        yes = q.cls != q.other and any(relation(a, b) == q.value for a in objs for b in others)
    return Answer("yes" if yes else "no", 1.0 if yes else 0.0)


# ---------------------------------------------------------------------------- 4. verdicts
def _dependents(claims: list[Claim], verdicts: list[Verdict]) -> None:
    """Claims about a refuted object go with it (its colour, number and relations)."""
    gone = {c.cls for c, v in zip(claims, verdicts) if c.kind == "object" and v.action == "delete"}
    for i, c in enumerate(claims):
        if c.kind == "object" or verdicts[i].action == "delete":
            continue
        if c.cls in gone or (c.kind == "relation" and c.value[1] in gone):
            verdicts[i] = Verdict(verdicts[i].supported, "delete", why="its object was refuted")


class WoodpeckerDecider:
    """The verdicts from the answers. An object answered no (p(yes) < threshold) is deleted, with its
    colour, number and relations. A colour or number whose open answer names another value is refuted and
    fixed to it (a number to at least one; with `fix` off, a colour is deleted and a number kept); where the
    open answer names none, the yes/no answer decides (a refuted colour is deleted, a number kept). A
    relation is refuted when another relation is likelier; it is turned to that one when it is answered yes,
    else deleted; and where the likeliest leads the next by less than `relation_margin` in p(yes), the model
    has not told the relations apart and the sentence is deleted. "small" answered no is deleted. A colour whose
    class's number is fixed stays only where the open answer named that colour (the phrase will then speak of
    every object). `object_threshold` (default `threshold`) is the p(yes) an object needs to stay."""

    def __init__(self, threshold: float = 0.5, fix: bool = True, object_threshold: float | None = None,
                 relation_margin: float = 0.0) -> None:
        self.threshold, self.fix, self.relation_margin = threshold, fix, relation_margin
        self.object_threshold = threshold if object_threshold is None else object_threshold

    def decide(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Verdict]:
        asked: dict[int, list[tuple[Question, Answer | None]]] = {}
        for q, a in zip(questions, answers):
            asked.setdefault(q.claim, []).append((q, a))
        verdicts = [self._one(c, asked.get(i, [])) for i, c in enumerate(claims)]
        fixed = {c.cls for c, v in zip(claims, verdicts) if c.kind == "count" and v.action == "fix"}
        for i, c in enumerate(claims):  # a colour of a class whose number changes must hold for all of them
            if c.kind == "attribute" and c.attribute == "color" and c.cls in fixed and verdicts[i].action == "keep":
                said = next((parse_open("attribute", a.text) for q, a in asked.get(i, [])
                             if q.role == "answer" and a is not None), "")
                if said != c.value:
                    verdicts[i] = Verdict(verdicts[i].supported, "delete", why="its number was fixed; the colour "
                                                                                 "is not said of all")
        _dependents(claims, verdicts)
        return verdicts

    def _one(self, c: Claim, asked: list[tuple[Question, Answer | None]]) -> Verdict:
        check = next((a for q, a in asked if q.role == "check"), None)
        if c.kind == "relation" and c.cls == c.value[1]:
            return Verdict(False, "delete", why="a class related to itself")
        if c.kind == "relation":
            choices = [(a.p_yes if a is not None and a.p_yes is not None else float(said_yes(a, 0.5) or 0), q.value)
                       for q, a in asked if q.role == "choice"]
            if not choices:
                return Verdict(None, "keep", why="not checked")
            p_claimed = next(p for p, r in choices if r == c.value[0])
            (p_best, best), (p_next, _) = sorted(choices, reverse=True)[:2]
            if p_best < self.threshold:
                return Verdict(False, "delete", why=f"no relation answered yes (best {p_best:.2f})")
            if p_best - p_next < self.relation_margin:
                return Verdict(False, "delete", why=f"relations not told apart ({best} {p_best:.2f}, next "
                                                    f"{p_next:.2f})")
            if p_claimed >= p_best:
                return Verdict(True, "keep", why=f"likeliest relation ({p_claimed:.2f})")
            if self.fix and p_claimed < self.threshold:  # turned only where the claimed one is answered no
                return Verdict(False, "fix", (best, c.value[1]), f"{best} likelier ({p_best:.2f} > {p_claimed:.2f})")
            return Verdict(False, "delete", why=f"{best} likelier ({p_best:.2f} > {p_claimed:.2f})")
        if c.kind in ("attribute", "count") and (c.kind == "count" or c.attribute == "color"):
            said = next((parse_open(c.kind, a.text) for q, a in asked if q.role == "answer" and a is not None), "")
            if said:
                value = said if c.kind == "attribute" else NUMBERS.index(said)
                if value == c.value:
                    return Verdict(True, "keep", why=f"answered {said}")
                if c.kind == "count" and value == 0:
                    return Verdict(False, "keep", why="answered zero (its object was not refuted)")
                confirm = {q.value: a for q, a in asked if q.role == "confirm" and a is not None}
                p_claimed, p_said = (confirm[v].p_yes if v in confirm and confirm[v].p_yes is not None else
                                     float(said_yes(confirm.get(v), 0.5) or 0) for v in (c.value, value))
                if confirm and p_claimed >= p_said:
                    return Verdict(True, "keep", why=f"answered {said}, but yes to {c.value} is likelier "
                                                     f"({p_claimed:.2f} >= {p_said:.2f})")
                if self.fix:
                    return Verdict(False, "fix", value, f"answered {said}")
                return Verdict(False, "delete" if c.kind == "attribute" else "keep", why=f"answered {said}")
        yes = said_yes(check, self.object_threshold if c.kind == "object" else self.threshold)
        if yes is None:
            return Verdict(None, "keep", why="not checked")
        if yes:
            return Verdict(True, "keep", why="answered yes")
        if c.kind == "count":
            return Verdict(False, "keep", why="answered no, but no other number")
        return Verdict(False, "delete", why="answered no")


class LogicCheckDecider:
    """An object claim stays when at least `loop_threshold` of its loops close (LogicCheckGPT's loop rate
    against its lambda): a loop closes when its open answer names a value and the closing question about
    that value is answered yes. Claims other than objects are not checked (LogicCheckGPT removes objects);
    those about a removed object go with it."""

    def __init__(self, threshold: float = 0.5, loop_threshold: float = 0.5, closes=None) -> None:
        # closes(question, answer): whether an open closing question's answer closes its loop (free text)
        self.threshold, self.loop_threshold, self.closes = threshold, loop_threshold, closes

    def decide(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Verdict]:
        loops: dict[int, int] = {}
        closed: dict[int, int] = {}
        for q, a in zip(questions, answers):
            if q.role == "loop" and a is not None:
                loops[q.claim] = loops.get(q.claim, 0) + 1
            elif q.role == "close" and (self.closes(q, a) if q.form == "open" and self.closes else
                                        said_yes(a, self.threshold)):
                closed[q.claim] = closed.get(q.claim, 0) + 1
        verdicts = []
        for i, c in enumerate(claims):
            if c.kind != "object" or not loops.get(i):
                verdicts.append(Verdict(None, "keep", why="not checked"))
                continue
            rate = closed.get(i, 0) / loops[i]
            ok = rate >= self.loop_threshold
            verdicts.append(Verdict(ok, "keep" if ok else "delete", why=f"loop rate {rate:.2f}"))
        _dependents(claims, verdicts)
        return verdicts


# ---------------------------------------------------------------------------- 5. rewriting
def parts_from_claims(caption: str, claims: list[Claim]) -> tuple[CaptionParts, str]:
    """(parts, style) of a caption outside the grammar, rebuilt from the claims the lenient parser read:
    one phrase per listed class (its number the count claim's, its colour and size the attribute
    claims'), in order of first mention, and the relation claims. Text it could not read is dropped."""
    words = tokenize_words(caption)
    short = len(words) >= 4 and words[2:4] == ["scene", "with"] and words[0] in ("a", "an")
    phrases: dict[str, Phrase] = {}
    for c in sorted(claims, key=lambda c: c.span[0]):
        if c.kind == "count":
            phrases.setdefault(c.cls, Phrase(c.cls, 1)).n = max(1, min(int(c.value), len(NUMBERS) - 1))
    for c in claims:
        if c.kind == "attribute" and c.cls in phrases:
            if c.attribute == "color" and phrases[c.cls].color is None:
                phrases[c.cls].color = c.value
            elif c.attribute == "size":
                phrases[c.cls].small = True
    order = {c.cls: c.span[0] for c in reversed(claims) if c.kind == "count" or c.kind == "object"}
    listed = sorted(phrases.values(), key=lambda p: order.get(p.cls, 0))
    relations = [(c.cls, c.value[0], c.value[1]) for c in claims if c.kind == "relation"]
    return CaptionParts(words[1] if short else "", listed, relations), "short" if short else "detailed"


def render(parts: CaptionParts, style: str) -> str:
    """`parts.render(style)`, but a caption whose objects all went keeps only its relation sentences (or
    is empty): the grammar has no sentence for an empty list."""
    if parts.phrases:
        return parts.render(style)
    if style == "short":
        return ""
    return " ".join(RELATION_SENTENCE.format(*r) for r in parts.relations)


def _merge_repeats(phrases: list[Phrase]) -> list[Phrase]:
    """One phrase per class (the grammar never repeats one): numbers add up; a colour or "small" stays only
    where every merged phrase says it (the merged phrase says it of all the objects)."""
    out: dict[str, Phrase] = {}
    for p in phrases:
        if p.cls in out:
            q = out[p.cls]
            q.n = min(q.n + p.n, len(NUMBERS) - 1)
            q.color = q.color if q.color == p.color else None
            q.small = q.small and p.small
        else:
            out[p.cls] = Phrase(p.cls, p.n, p.small, p.color)
    return list(out.values())


class WorldRewriter:
    """Edits the caption's parts (`parse_world_caption`, or `parts_from_claims` for a caption outside the
    grammar) as the verdicts say and renders them with the world's grammar. Nothing refuted: the caption
    comes back as it was."""

    def rewrite(self, caption: str, claims: list[Claim], verdicts: list[Verdict]) -> tuple[str, list[dict[str, Any]]]:
        if all(v.action == "keep" for v in verdicts):
            return caption, []
        parsed = parse_world_caption(caption)
        parts, style = parsed if parsed is not None else parts_from_claims(caption, claims)
        parts.phrases = _merge_repeats(parts.phrases)
        by_class = {p.cls: p for p in parts.phrases}
        edits = []
        for c, v in zip(claims, verdicts):
            if v.action == "keep":
                continue
            edit = {"kind": c.kind, "claim": c.text, "class": c.cls, "action": v.action, "why": v.why}
            p = by_class.get(c.cls)
            if c.kind == "object":
                parts.phrases = [q for q in parts.phrases if q.cls != c.cls]
                parts.relations = [r for r in parts.relations if c.cls not in (r[0], r[2])]
            elif c.kind == "attribute" and p is not None:
                if c.attribute == "size":
                    p.small = False
                else:
                    p.color = v.fix if v.action == "fix" else None
                edit["to"] = v.fix
            elif c.kind == "count" and p is not None and v.action == "fix":
                p.n = int(v.fix)
                edit["to"] = NUMBERS[p.n]
            elif c.kind == "relation":
                rel, other = c.value
                old = (c.cls, rel, other)
                if v.action == "fix":
                    parts.relations = [(c.cls, v.fix[0], other) if r == old else r for r in parts.relations]
                    parts.places.pop((c.cls, other), None)  # the places the wrong relation was read from
                    edit["to"] = v.fix[0]
                else:
                    parts.relations = [r for r in parts.relations if r != old]
            edits.append(edit)
        return render(parts, style), edits


__all__ = ["OPPOSITE", "LogicCheckDecider", "LogicCheckQuestions", "OracleValidator", "WoodpeckerDecider",
           "WoodpeckerQuestions", "WorldExtractor", "WorldRewriter", "check_question", "parse_open",
           "parts_from_claims", "render", "said_yes", "truth_answer"]
