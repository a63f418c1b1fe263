"""Why does this model hallucinate? The papers' analyses, on any model (`halluscope diagnose`).

Each analysis is a function of an adapter and caption or question records, returning a JSON-able dict:

| key | analysis | module |
|---|---|---|
| kinds | hallucination rate per kind (object, attribute, count, relation), 95 % CI | `claims.kinds` |
| overgeneralization | RLHF-V: a scene's typical objects claimed in its vs other scenes | `claims.overgeneralization` |
| position | hallucination rate against sentence index and relative position | `claims.position` |
| base_rank | VDGD: rank of hallucinated tokens under a text-only base LM; attribution | `tokens.base_rank` |
| logit_elbow | VDGD: confident candidates at hallucinated vs correct first tokens | `tokens.logit_elbow` |
| feature_stability | VTI: variance of vision features under random patch masking | `vision.feature_stability` |
| modality_gap | HACL Fig. 1: image vs caption states, probe AUC, 2-D projection | `vision.modality_gap` |
| language_prior | VCD: answers without the image and with noise; persisting false positives | `vision.language_prior` |
| attention_to_image | attention share on image tokens along the caption (eager) | `tokens.attention_to_image` |

`run.diagnose_world` / `run.diagnose_real` run them all; `run.write_diagnosis` writes diagnosis.json, the
PNGs (`plots`) and diagnosis.md (`readings`). The built-in model's base LM is `base_lm.builtin_base_lm`.
"""

from .base_lm import BaseLMConfig, TextLMScorer, VLMScorer, builtin_base_lm
from .claims import cooccurrence_clusters, kinds, overgeneralization, position
from .run import ANALYSES, DiagnoseConfig, diagnose_real, diagnose_world, write_diagnosis
from .tokens import attention_to_image, base_rank, elbow_k, logit_elbow, world_neighbours
from .vision import auc, feature_stability, language_prior, modality_gap, probe_auc

__all__ = ["ANALYSES", "BaseLMConfig", "DiagnoseConfig", "TextLMScorer", "VLMScorer", "attention_to_image", "auc",
           "base_rank", "builtin_base_lm", "cooccurrence_clusters", "diagnose_real", "diagnose_world", "elbow_k",
           "feature_stability", "kinds", "language_prior", "logit_elbow", "modality_gap", "overgeneralization",
           "position", "probe_auc", "world_neighbours", "write_diagnosis"]
