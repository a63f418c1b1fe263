"""What a task is, and the one place that calls the model for it.

A task is data plus small pure functions, as an lmms-eval task is a YAML file plus `utils.py`:

    samples()               what to run, each a dict with an `id` (and an `image`)    ~ dataset + doc_to_visual
    request(sample)         what to ask the model: a yes/no question or a generation  ~ doc_to_text + output_type
    record(sample, answer)  the JSON line kept for the sample                          ~ process_results
    score(records)          metrics of the finished records                            ~ aggregation

Tasks never call the model themselves: `answer()` reads each sample's request and makes the call
(yes/no questions all go through `yes_no_answers`), so a task cannot drift from the others in how it
asks, and a new task is four small functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from .answers import yes_no_answers

YES_NO_MODES = ("score", "generate")


@dataclass(frozen=True)
class Request:
    """One question to the model about one sample's image.

    kind "yes_no": answered "yes" or "no"; `mode` "score" compares the two answers' first-token
    log-probabilities under the method (one forward pass), "generate" parses generated text.
    kind "generate": free text of at most `max_new_tokens` tokens."""

    kind: Literal["yes_no", "generate"]
    prompt: str
    max_new_tokens: int = 64
    mode: str = "score"

    def __post_init__(self) -> None:
        if self.kind not in ("yes_no", "generate"):
            raise ValueError(f"Request.kind={self.kind!r} is invalid: use 'yes_no' or 'generate'")
        if self.kind == "yes_no" and self.mode not in YES_NO_MODES:
            raise ValueError(f"Request.mode={self.mode!r} is invalid: use one of {', '.join(YES_NO_MODES)}")


def yes_no(prompt: str, mode: str = "score") -> Request:
    return Request("yes_no", prompt, mode=mode)


def generate(prompt: str, max_new_tokens: int) -> Request:
    return Request("generate", prompt, max_new_tokens=max_new_tokens)


@runtime_checkable
class Task(Protocol):
    """The protocol every task meets (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def samples(self) -> list[dict[str, Any]]: ...

    def request(self, sample: dict[str, Any]) -> Request: ...

    def record(self, sample: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]: ...

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]: ...


def answer(task: Task, adapter, batch: list[dict[str, Any]], method: str = "greedy",
           method_args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The records of a batch: each sample's request answered by `adapter` with `method`, in one
    call per kind of request (and length), then kept as the task's `record`.

    The answer a task's `record` receives: {"text": ...} for a generation; {"prediction": "yes"|"no",
    "logprob_yes_no": [yes, no]} in score mode or {"prediction": ..., "raw": text} in generate mode
    for a yes/no question."""
    method_args = dict(method_args or {})
    requests = [task.request(s) for s in batch]
    answers: list[dict[str, Any] | None] = [None] * len(batch)
    # Generations first, then yes/no questions: a sampling method draws its random numbers in this order.
    groups: dict[tuple[str, int | str], list[int]] = {}
    for kind in ("generate", "yes_no"):
        for i, r in enumerate(requests):
            if r.kind == kind:
                groups.setdefault((kind, r.max_new_tokens if kind == "generate" else r.mode), []).append(i)
    for (kind, setting), idx in groups.items():
        images, prompts = [batch[i]["image"] for i in idx], [requests[i].prompt for i in idx]
        if kind == "generate":
            texts = adapter.generate(images, prompts, method=method, max_new_tokens=setting, **method_args)
            got = [{"text": t} for t in texts]
        else:
            questions = [{"image": im, "text": p} for im, p in zip(images, prompts)]
            got = yes_no_answers(adapter, questions, method, method_args, setting)
        for i, a in zip(idx, got):
            answers[i] = a
    return [task.record(s, a) for s, a in zip(batch, answers)]


class TaskBase:
    """What every built-in task shares: `predict`, the batch call through `answer` (kept for code
    that called a benchmark's `predict` directly)."""

    def predict(self, adapter, batch: list[dict[str, Any]], method: str = "greedy",
                method_args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return answer(self, adapter, batch, method, method_args)


__all__ = ["YES_NO_MODES", "Request", "Task", "TaskBase", "answer", "generate", "yes_no"]
