"""Hallucination metrics as pure functions of (predictions, ground truth), with the official scorers'
parsing rules by default and every variant named. Values are fractions in [0, 1] (MME's score is
0 to 200, mean lengths are token counts); none depends on batch size or input order.

One module per benchmark; everything public is importable from here:

- POPE: `pope`, `parse_yes_no`, `POPE_PARSERS`, `pope_mean_f1`, `load_pope_questions`,
  `pope_labels`, `load_pope_answers`
- CHAIR: `chair`, `caption_objects`, `coco_synonyms`, `parse_synonyms`, `load_gt_objects`,
  `coco_gt_objects`, and for an exact vocabulary `chair_vocabulary`, `mentioned_objects`
- AMBER: `amber`, `AMBER_PARSERS`, `load_amber_annotations`, `spacy_similarity`
- MME: `mme`, `parse_mme_answer`, `load_mme_results`, `MME_HALLUCINATION_SUBTASKS`
- `bootstrap_ci`, and for statistics of summed counts `bootstrap_sums_ci` with `ratio`

docs/metrics.md says which official scorer each follows and what differs.
"""

from ._amber import AMBER_PARSERS, amber, load_amber_annotations, spacy_similarity
from ._chair import (
    caption_objects, chair, chair_vocabulary, coco_gt_objects, coco_synonyms, load_gt_objects, mentioned_objects,
    parse_synonyms,
)
from ._mme import MME_HALLUCINATION_SUBTASKS, load_mme_results, mme, parse_mme_answer
from ._pope import POPE_PARSERS, load_pope_answers, load_pope_questions, parse_yes_no, pope, pope_labels, pope_mean_f1
from ._stats import bootstrap_ci, bootstrap_sums_ci, ratio

__all__ = [
    "AMBER_PARSERS", "MME_HALLUCINATION_SUBTASKS", "POPE_PARSERS", "amber", "bootstrap_ci", "bootstrap_sums_ci",
    "caption_objects", "chair", "chair_vocabulary", "coco_gt_objects", "coco_synonyms", "load_amber_annotations",
    "load_gt_objects", "load_mme_results", "load_pope_answers", "load_pope_questions", "mentioned_objects", "mme",
    "parse_mme_answer", "parse_synonyms", "parse_yes_no", "pope", "pope_labels", "pope_mean_f1", "ratio",
    "spacy_similarity",
]
