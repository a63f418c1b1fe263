"""Cause studies: what makes a VLM hallucinate, by experiment. A study varies one cause (`CAUSES`: data biases,
visual resolution, the connector, the language model's size, decoding randomness), trains the study recipe at each
level on several seeds, measures every arm on the same test images, and writes dose-response curves with the
literature's direction beside the lab's.

    run_study("cooccurrence", levels=[0.0, 0.5, 0.8, 0.95], seeds=[0, 1, 2], output="studies/cooccurrence")
"""

from .study import (METRICS, StudyConfig, arm_recipe, evaluate_arm, mean_ci, run_arm, run_study, study_markdown,
                    study_recipe, summarize, verdict)
from .table import CAUSES, Arm, Cause, get_cause

__all__ = ["CAUSES", "METRICS", "Arm", "Cause", "StudyConfig", "arm_recipe", "evaluate_arm", "get_cause", "mean_ci",
           "run_arm", "run_study", "study_markdown", "study_recipe", "summarize", "verdict"]
