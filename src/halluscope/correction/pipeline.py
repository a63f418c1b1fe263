"""Pipelines of post-hoc correction: the stages put together, their config, and the registries.

    corrector = make_corrector("woodpecker:self", adapter=adapter)            # the world (default)
    corrector = make_corrector("woodpecker:detector", adapter=adapter, domain="real",
                               detector="google/owlv2-base-patch16-ensemble")
    for item in corrector.correct([Item(image, caption, scene), ...]):
        item.corrected, item.edits, item.claims, item.questions, item.answers, item.verdicts

A spec is `PIPELINE[:VALIDATOR]`: pipelines "woodpecker" and "logiccheck" (`PIPELINES`), validators
"self" (the VLM's own answers), "oracle" (the world's truth: the ceiling) and "detector" (a zero-shot
detector; existence and counts only) (`VALIDATORS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from .stages import Decider, Extractor, Formulator, Item, Rewriter, Validator

DOMAINS = ("world", "real")
VALIDATORS = ("self", "oracle", "detector")


@dataclass
class WoodpeckerConfig(Config):
    """Woodpecker (Yin et al., 2023): extract the claims, ask a question per claim, validate each against
    the image, decide, rewrite. Local and pluggable here: the claims come from the world's parser (or
    CHAIR's object words), the answers from the VLM itself, the truth or a detector, the rewrite from the
    grammar (or rules, or a local LM). The paper's gains are on POPE (+30.66 accuracy points, MiniGPT-4)."""

    _paper = {
        "title": "Woodpecker: Hallucination Correction for Multimodal Large Language Models",
        "authors": "Shukang Yin, Chaoyou Fu, Sirui Zhao, Tong Xu, Hao Wang, Dianbo Sui, Yunhang Shen, Ke Li, "
                   "Xing Sun, Enhong Chen",
        "venue": "arXiv:2310.16045 (2023)",
        "url": "https://arxiv.org/abs/2310.16045",
    }

    validator: str = field(default="self", metadata={"help": "who answers: self, oracle (world truth) or detector"})
    threshold: float = field(default=0.5, metadata={
        "help": "a claim is refuted when p(yes) of its question is below this (the VLM's yes vs no, "
                "renormalised)"})
    object_threshold: float | None = field(default=None, metadata={
        "help": "the p(yes) an object needs to stay (default: threshold); above 0.5 asks the model to be sure, "
                "against its yes-bias"})
    relation_margin: float = field(default=0.0, metadata={
        "help": "delete a relation whose likeliest answer leads the next by less than this in p(yes): the model "
                "did not tell the relations apart (0: the likeliest wins however slim its lead)"})
    fix: bool = field(default=True, metadata={
        "help": "fix a refuted colour, number or relation from a short answer (else delete it)"})
    check_size: bool = field(default=True, metadata={"help": "also check 'small' claims ('Is the X small?')"})
    method: str = field(default="greedy", metadata={"help": "decoding method of the self-check's answers"})
    max_new_tokens: int = field(default=16, metadata={
        "help": "tokens of a short answer (a colour, or a number after the places of what it counts)"})
    batch_size: int = field(default=16, metadata={"help": "questions per forward pass"})
    detector: str | None = field(default=None, metadata={
        "help": "validator=detector: an OWLv2 / OWL-ViT model folder or hub id"})
    detector_threshold: float = field(default=0.1, metadata={"help": "box score that counts as a detection"})
    rewriter: str = field(default="rules", metadata={
        "help": "real captions: 'rules' (drop sentences naming a refuted object) or a local causal LM folder"})

    def __post_init__(self) -> None:
        if self.validator not in VALIDATORS:
            self.fail("validator", f"use one of {', '.join(VALIDATORS)}")
        self.check_range("threshold", 0.0, 1.0, "0.5 refutes a claim when the model says no rather than yes")
        if self.object_threshold is not None:
            self.check_range("object_threshold", 0.0, 1.0, "leave it unset to use threshold")
        self.check_range("relation_margin", 0.0, 1.0, "0 keeps the likeliest relation")
        self.check_range("detector_threshold", 0.0, 1.0)
        if self.max_new_tokens < 1:
            self.fail("max_new_tokens", "must be >= 1")
        if self.batch_size < 1:
            self.fail("batch_size", "must be >= 1")
        if self.validator == "detector" and not self.detector:
            self.fail("detector", "validator=detector needs detector=MODEL (an OWLv2 folder or hub id)")


@dataclass
class LogicCheckConfig(WoodpeckerConfig):
    """LogicCheckGPT (Wu et al., ACL 2024), detector-free: ask about an object's attributes, then ask back
    from each attribute to the object; a real object's answers close the loop, a hallucinated one's do not.
    An object whose loop rate is below `loop_threshold` (the paper's lambda) is removed."""

    _paper = {
        "title": "Logical Closed Loop: Uncovering Object Hallucinations in Large Vision-Language Models",
        "authors": "Junfei Wu, Qiang Liu, Ding Wang, Jinghao Zhang, Shu Wu, Liang Wang, Tieniu Tan",
        "venue": "ACL 2024 Findings",
        "url": "https://arxiv.org/abs/2402.11622",
    }

    loop_threshold: float = field(default=0.5, metadata={"help": "keep an object whose loop rate is at least this"})
    max_new_tokens: int = field(default=8, metadata={"help": "tokens of an open answer"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_range("loop_threshold", 0.0, 1.0)


PIPELINES: dict[str, type[WoodpeckerConfig]] = {"woodpecker": WoodpeckerConfig, "logiccheck": LogicCheckConfig}


def parse_spec(spec: str) -> tuple[str, str]:
    """'woodpecker' -> ('woodpecker', 'self'); 'logiccheck:oracle' -> ('logiccheck', 'oracle')."""
    name, _, validator = spec.partition(":")
    if name not in PIPELINES:
        raise ValueError(f"unknown correction pipeline {name!r}; use one of {', '.join(PIPELINES)} "
                         f"(optionally :{'|'.join(VALIDATORS)})")
    validator = validator or "self"
    if validator not in VALIDATORS:
        raise ValueError(f"unknown validator {validator!r} in {spec!r}; use one of {', '.join(VALIDATORS)}")
    return name, validator


@dataclass
class Corrector:
    """The five stages (see `stages.py`) run over a batch of captions, validation batched across them."""

    name: str
    extractor: Extractor
    formulator: Formulator
    validator: Validator
    decider: Decider
    rewriter: Rewriter
    config: WoodpeckerConfig

    def correct(self, items: list[Item]) -> list[Item]:
        for it in items:
            it.claims, it.unparsed = self.extractor.extract(it.caption)
            it.questions = self.formulator.first(it.claims)
        first = [len(it.questions) for it in items]
        self._ask(items, [(i, q) for i, it in enumerate(items) for q in it.questions])
        later = []
        for i, it in enumerate(items):
            more = self.formulator.then(it.claims, it.questions[:first[i]], it.answers[:first[i]])
            it.questions = it.questions + more
            later += [(i, q) for q in more]
        self._ask(items, later)
        for it in items:
            it.verdicts = self.decider.decide(it.claims, it.questions, it.answers)
            it.corrected, it.edits = self.rewriter.rewrite(it.caption, it.claims, it.verdicts)
        return items

    def _ask(self, items: list[Item], questions) -> None:
        answers = self.validator.answer(items, questions) if questions else []
        for (i, _), a in zip(questions, answers):
            items[i].answers.append(a)

    def calls(self) -> dict[str, int]:
        """Questions asked so far, by form (self-check), or images seen (detector)."""
        return dict(getattr(self.validator, "calls", {}))


def make_corrector(spec: str = "woodpecker:self", adapter=None, domain: str = "world", **config: Any) -> Corrector:
    """The corrector of `spec` ('woodpecker', 'woodpecker:oracle', 'logiccheck:self', ...) for captions of
    the world (`domain="world"`) or real images ("real"); `config`: the pipeline's config fields
    (`WoodpeckerConfig`, `LogicCheckConfig`), plus `method_args` for the self-check's decoding method."""
    from . import real, validators, world

    name, validator_name = parse_spec(spec)
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; use 'world' or 'real'")
    method_args = config.pop("method_args", None) or {}
    cfg = PIPELINES[name](**{"validator": validator_name, **config})
    if cfg.validator != validator_name:
        raise ValueError(f"{spec!r} names validator {validator_name!r} but validator={cfg.validator!r}; name it once")
    if cfg.validator == "self":
        if adapter is None:
            raise ValueError("the self-check validator asks the VLM: pass adapter=")
        validator: Validator = validators.SelfValidator(adapter, cfg.method, method_args, cfg.batch_size,
                                                        cfg.max_new_tokens)
    elif cfg.validator == "oracle":
        if domain != "world":
            raise ValueError("the oracle validator answers from the world's truth; on real images use self or detector")
        validator = world.OracleValidator()
    else:
        validator = validators.DetectorValidator.from_pretrained(cfg.detector, threshold=cfg.detector_threshold)
    logic = isinstance(cfg, LogicCheckConfig)
    if domain == "world":
        extractor: Extractor = world.WorldExtractor()
        formulator: Formulator = (world.LogicCheckQuestions() if logic else
                                  world.WoodpeckerQuestions(cfg.threshold, cfg.check_size, cfg.fix))
        decider: Decider = (world.LogicCheckDecider(cfg.threshold, cfg.loop_threshold) if logic else
                            world.WoodpeckerDecider(cfg.threshold, cfg.fix, cfg.object_threshold, cfg.relation_margin))
        rewriter: Rewriter = world.WorldRewriter()
    else:
        extractor = real.RealExtractor()
        formulator = real.RealLogicCheckQuestions() if logic else real.RealQuestions()
        decider = (world.LogicCheckDecider(cfg.threshold, cfg.loop_threshold, real.names_class(extractor)) if logic
                   else world.WoodpeckerDecider(cfg.threshold, cfg.fix, cfg.object_threshold))
        rewriter = real.RuleRewriter() if cfg.rewriter == "rules" else real.LMRewriter.from_pretrained(cfg.rewriter)
    return Corrector(f"{name}:{cfg.validator}", extractor, formulator, validator, decider, rewriter, cfg)


__all__ = ["DOMAINS", "PIPELINES", "VALIDATORS", "Corrector", "LogicCheckConfig", "WoodpeckerConfig",
           "make_corrector", "parse_spec"]
