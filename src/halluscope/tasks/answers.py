"""Yes/no answers of a batch of questions, shared by every yes/no benchmark."""

from __future__ import annotations

from typing import Any

from .. import metrics


def yes_no_answers(adapter, batch: list[dict[str, Any]], method: str, method_args: dict, mode: str,
                   key: str = "text") -> list[dict[str, Any]]:
    """{"prediction": "yes"|"no", ...} per sample (question under `key`): in "score" mode, yes vs
    no under the method's first-step scores (its contrast included), from one forward pass; in
    "generate" mode, parsed from generated text (kept under "raw", for other parsers)."""
    images, texts = [s["image"] for s in batch], [s[key] for s in batch]
    if mode == "score":
        lp = adapter.yes_no_logprobs(images, texts, method=method, **method_args).tolist()
        return [{"prediction": "yes" if y >= n else "no", "logprob_yes_no": [y, n]} for y, n in lp]
    raw = adapter.yes_no_texts(images, texts, method=method, **method_args)
    return [{"prediction": metrics.parse_yes_no(r), "raw": r} for r in raw]
