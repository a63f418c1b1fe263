"""Post-hoc correction: a Woodpecker-style pipeline with pluggable local stages, each scored on the world
against exact truth.

    from halluscope.correction import Item, make_corrector, correct_run
    corrector = make_corrector("woodpecker:self", adapter=adapter)      # or :oracle, :detector; logiccheck
    item, = corrector.correct([Item(image, caption, scene)])
    item.corrected, item.edits                                          # and every stage's output
    correct_run("runs/m", adapter, "woodpecker:self")                   # a run's captions, scored per stage

Stages (`stages.py`, one protocol each): extraction, question formulation, validation, verdicts,
rewriting. On the world (`world.py`): the grammar's claim parser, the world's question templates, the
model's own answers or the truth, rewriting through the one grammar. On real captions (`real.py`): CHAIR's
object words, a zero-shot detector or the VLM (`validators.py`), rule or local-LM rewriting. `scores.py`
scores each stage; `run.py` corrects a run folder.
"""

from .pipeline import (
    DOMAINS, PIPELINES, VALIDATORS, Corrector, LogicCheckConfig, WoodpeckerConfig, make_corrector, parse_spec,
)
from .run import CAPTION_TASKS, correct_records, correct_run, corrected_files, file_stem, summary
from .scores import correction_scores
from .stages import Answer, Decider, Extractor, Formulator, Item, Question, Rewriter, Validator, Verdict

__all__ = [
    "CAPTION_TASKS", "DOMAINS", "PIPELINES", "VALIDATORS", "Answer", "Corrector", "Decider", "Extractor", "Formulator",
    "Item", "LogicCheckConfig", "Question", "Rewriter", "Validator", "Verdict", "WoodpeckerConfig", "correct_records",
    "correct_run", "corrected_files", "correction_scores", "file_stem", "make_corrector", "parse_spec", "summary",
]
