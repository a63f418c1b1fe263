"""The stages on real captions (free text about COCO-like images), where the claims are object mentions.

- extraction: CHAIR's object words (COCO's 80 categories with their synonyms and two-word names,
  singularised without NLTK data), one object claim per category with the spans of all its mentions;
- questions: "Is there a {category} in the image?"; LogicCheck's loops: "What color is the {category}
  in the image?" then "What is {colour} in the image?", which closes when the answer names the category;
- validation: the VLM itself (`SelfValidator`) or a zero-shot detector (`DetectorValidator`);
- rewriting: by rules (the sentences that name a refuted object go) or by a local causal LM the user
  names, whose output is used only when it is non-empty and names no refuted object (else the rules').
"""

from __future__ import annotations

import re
from typing import Any

from ..metrics._chair import _coco_rules
from ..metrics._text import SimpleBackend
from ..world.claims import Claim
from .stages import Answer, Question, Verdict

_TOKEN = re.compile(r"[a-z]+")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*\s*")


class RealExtractor:
    """Object claims from CHAIR's COCO vocabulary: each category named, with the span of its first
    mention (`span`) and of every mention (`value`)."""

    def __init__(self) -> None:
        self.rules = _coco_rules()
        self.nlp = SimpleBackend(self.rules.known)

    def mentions(self, caption: str) -> list[tuple[str, tuple[int, int]]]:
        """(category, span) of each object mention, in order."""
        low = caption.lower()
        toks = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(low)]
        lemmas = self.nlp.lemmas([t[0] for t in toks])
        out, i = [], 0
        while i < len(toks):
            pair = " ".join(lemmas[i:i + 2])
            if i + 1 < len(toks) and pair in self.rules.double_words:
                word, span, i = self.rules.double_words[pair], (toks[i][1], toks[i + 1][2]), i + 2
            else:
                word, span, i = lemmas[i], (toks[i][1], toks[i][2]), i + 1
            if word in self.rules.inverse:
                out.append((self.rules.inverse[word], span))
        return out

    def extract(self, caption: str) -> tuple[list[Claim], list[tuple[int, int]]]:
        spans: dict[str, list[tuple[int, int]]] = {}
        for cat, span in self.mentions(caption):
            spans.setdefault(cat, []).append(span)
        claims = [Claim("object", caption[s[0][0]:s[0][1]], s[0], cat, value=s) for cat, s in spans.items()]
        return claims, []


class RealQuestions:
    """One existence question per object claim; no fixes (a refuted object is deleted)."""

    def __init__(self, template: str = "Is there a {} in the image?") -> None:
        self.template = template

    def first(self, claims: list[Claim]) -> list[Question]:
        return [Question(i, "existence", "yes_no", self.template.format(c.cls), c.cls) for i, c in enumerate(claims)
                if c.kind == "object"]

    def then(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Question]:
        return []


class RealLogicCheckQuestions:
    """LogicCheckGPT's loop on free text: object -> attribute ("What color is the X in the image?"), then
    attribute -> object ("What is <colour> in the image?"); the loop closes when that answer names X."""

    def first(self, claims: list[Claim]) -> list[Question]:
        return [Question(i, "attribute", "open", f"What color is the {c.cls} in the image? Answer with one word.",
                         c.cls, role="loop") for i, c in enumerate(claims) if c.kind == "object"]

    def then(self, claims: list[Claim], questions: list[Question], answers: list[Answer | None]) -> list[Question]:
        out = []
        for q, a in zip(questions, answers):
            word = next(iter(_TOKEN.findall(a.text.lower())), "") if a is not None else ""
            if word:
                out.append(Question(q.claim, "object", "open", f"What is {word} in the image? Answer with one word.",
                                    q.cls, word, role="close"))
        return out


def names_class(extractor: RealExtractor):
    """A closing test for LogicCheck on free text: the answer names the question's category."""
    return lambda q, a: a is not None and q.cls in {cat for cat, _ in extractor.mentions(a.text)}


# ---------------------------------------------------------------------------- rewriting
class RuleRewriter:
    """Deletes each sentence that names a refuted object; the rest stays word for word."""

    def rewrite(self, caption: str, claims: list[Claim], verdicts: list[Verdict]) -> tuple[str, list[dict[str, Any]]]:
        gone = [c for c, v in zip(claims, verdicts) if v.action == "delete"]
        if not gone:
            return caption, []
        kept, edits = [], []
        for m in _SENTENCE.finditer(caption):
            hit = [c for c in gone if any(m.start() <= s[0] < m.end() for s in (c.value or [c.span]))]
            if hit:
                edits.append({"kind": "object", "action": "delete", "class": ", ".join(c.cls for c in hit),
                              "claim": ", ".join(c.text for c in hit), "sentence": m.group().strip(),
                              "why": "names a refuted object"})
            else:
                kept.append(m.group())
        return "".join(kept).strip(), edits


class LMRewriter:
    """A local causal LM rewrites the caption without the refuted objects (`model`, `tokenizer`: any
    transformers causal LM, e.g. a small instruct model). Its output is used when it is non-empty and
    names none of the refuted objects; otherwise the rule rewrite is, and the edit says why."""

    PROMPT = ("Rewrite the image description so that it no longer mentions: {objects}. Keep everything else.\n"
              "Description: {caption}\nRewritten description:")

    def __init__(self, model, tokenizer, max_new_tokens: int = 96, extractor: RealExtractor | None = None) -> None:
        self.model, self.tokenizer, self.max_new_tokens = model.eval(), tokenizer, max_new_tokens
        self.extractor = extractor or RealExtractor()
        self.rules = RuleRewriter()
        self.calls = 0

    @classmethod
    def from_pretrained(cls, name: str, device: str = "cpu", **kwargs: Any) -> LMRewriter:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return cls(AutoModelForCausalLM.from_pretrained(name).to(device), AutoTokenizer.from_pretrained(name), **kwargs)

    def generate(self, prompt: str) -> str:
        import torch

        enc = self.tokenizer(prompt, return_tensors="pt").to(self.model.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        self.calls += 1
        return self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def rewrite(self, caption: str, claims: list[Claim], verdicts: list[Verdict]) -> tuple[str, list[dict[str, Any]]]:
        gone = [c for c, v in zip(claims, verdicts) if v.action == "delete"]
        if not gone:
            return caption, []
        text = self.generate(self.PROMPT.format(objects=", ".join(c.cls for c in gone), caption=caption))
        text = text.split("\n")[0].strip()
        still = {cat for cat, _ in self.extractor.mentions(text)} & {c.cls for c in gone}
        if text and not still:
            return text, [{"kind": "object", "action": "delete", "class": c.cls, "claim": c.text, "why": "lm rewrite"}
                          for c in gone]
        fallback, edits = self.rules.rewrite(caption, claims, verdicts)
        reason = "empty" if not text else f"still names {', '.join(sorted(still))}"
        return fallback, [e | {"why": f"rule rewrite (the LM's output was {reason})"} for e in edits]


__all__ = ["LMRewriter", "RealExtractor", "RealLogicCheckQuestions", "RealQuestions", "RuleRewriter", "names_class"]
