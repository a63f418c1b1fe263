"""halluscope inside other evaluation harnesses.

- `halluscope.integrations.lmms_eval`: lmms-eval's `--model halluscope` (any model, any decoding or
  steering method, any of lmms-eval's generation tasks).

This package loads nothing at import: lmms-eval reads `lmms_eval_manifest` through the entry point
`lmms_eval.models` (pyproject.toml) each time it starts, so it must stay cheap.
"""

from __future__ import annotations

from typing import Any

LMMS_EVAL_MODEL = "halluscope"
LMMS_EVAL_CLASS = "halluscope.integrations.lmms_eval.Halluscope"


def lmms_eval_manifest() -> Any:
    """lmms-eval's (>= 0.6) registration of `--model halluscope`: a `ModelManifest` naming the class by
    its path, which lmms-eval imports only when the model is used."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=LMMS_EVAL_MODEL, simple_class_path=LMMS_EVAL_CLASS)


__all__ = ["LMMS_EVAL_CLASS", "LMMS_EVAL_MODEL", "lmms_eval_manifest"]
