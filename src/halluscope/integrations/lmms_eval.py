"""lmms-eval's `--model halluscope`: any model halluscope loads, under any of its decoding or steering
methods, on any of lmms-eval's generation tasks.

    pip install -e '.[lmms]'    # lmms-eval >= 0.6 finds the model through halluscope's entry point
    lmms-eval --model halluscope --model_args pretrained=llava-hf/llava-1.5-7b-hf,method=vcd,alpha=1,beta=0.1 \\
        --tasks pope --batch_size 8 --output_path runs/lmms

`--model_args` keys:

- `pretrained`: a model folder, a hub id, or `tiny` (the built-in model), as `halluscope eval --model`;
- `method`: a decoding method of `halluscope.decoding.METHODS` (greedy, sample, vcd, icd, m3id, vdgd,
  vti, ...), default greedy;
- the loading options of `halluscope eval --model-args`: device, dtype, device_map, attn_implementation,
  revision, trust_remote_code, load_in_4bit;
- `max_new_tokens`: the length cap where a task's generation_kwargs set none (default 1024); to
  override a task's own, use lmms-eval's `--gen_kwargs max_new_tokens=N`;
- every other key is an argument of the method (`alpha=1,beta=0.1`, `noise_step=500`, `seed=0`), read
  as its config's field type, as `--method-args` is, and checked before the model loads.

A task's generation_kwargs map onto the method: `max_new_tokens`; `until` (the answer is cut at the
first stop string); `do_sample`/`temperature`/`top_p`/`top_k` turn the method's sampling on (the
method's own `sample=`, given in model_args, wins). Beam search is not a halluscope method:
`num_beams > 1` is ignored, with a warning.

The methods take one image per question: a document with several images, a video, audio or no
image fails naming itself. Log-likelihood requests (multiple-choice and perplexity tasks) fail too,
since a decoding method changes how tokens are picked, not how a given answer is scored.

`HalluscopeModel` holds all of this and needs no lmms-eval; `Halluscope` is it on lmms-eval's base
class, registered as "halluscope". Without lmms-eval this module still imports, and `Halluscope(...)`
raises an ImportError saying what to install.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import fields
from itertools import groupby
from typing import Any, NamedTuple

from .. import kv
from ..decoding.adapter import VLMAdapter
from ..decoding.registry import METHODS, get_method
from ..images import ImageLike
from ..progress import progress as progress_bar
from ..zoo import load_model

INSTALL = "pip install 'halluscope[lmms]' (or pip install 'lmms-eval>=0.6')"
LOAD_ARGS = ("device", "dtype", "device_map", "attn_implementation", "revision", "trust_remote_code", "load_in_4bit")
OWN_ARGS = ("pretrained", "method", "batch_size", "max_batch_size", "max_new_tokens", "progress", *LOAD_ARGS)
DTYPES = ("auto", "float32", "float16", "bfloat16")
DEFAULT_MAX_NEW_TOKENS = 1024  # lmms-eval's models' default where a task sets none
IMAGE_PLACEHOLDER = "<image>"  # LLaVA's; the adapter places the image itself
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".wmv", ".m4v")
LOGLIKELIHOOD_MESSAGE = (
    "halluscope: loglikelihood requests (tasks with output_type multiple_choice or loglikelihood, e.g. "
    "seedbench_ppl, mmlu, arc) are not supported: its methods change decoding, not the scoring of a given "
    "answer; run generation tasks (pope, mme, ...)")


def _one_line(error: Any) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _text(value: Any) -> str:
    """A model_args value as `k=v` text again: lmms-eval has already turned 'true', '3' and '0.5' into
    Python values, and the method's config reads text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | list | tuple | dict | type(None)):
        return repr(value)
    return str(value)


def method_args(method: str, values: dict[str, Any]) -> dict[str, Any]:
    """The arguments of `method` from lmms-eval's model_args (what is left after halluscope's own keys),
    read as the method config's field types (other keys, e.g. VTI's base method's, as literals), as
    `halluscope eval --method-args` reads them; checked by building the method once. A bad one raises
    a one-line ValueError."""
    if method not in METHODS:
        raise ValueError(f"halluscope model_args: method={method!r} is not a decoding method; "
                         f"use one of {', '.join(METHODS)}")
    config_cls = METHODS[method].config_cls
    raw = {k: _text(v) for k, v in values.items()}
    own = {k: v for k, v in raw.items() if k in {f.name for f in fields(config_cls)}}
    try:
        args = {**{k: kv.literal(v) for k, v in raw.items()}, **kv.config_kwargs(config_cls, own)}
        get_method(method, **args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"halluscope model_args: {_one_line(e)} (the keys that are not the method's: "
                         f"{', '.join(OWN_ARGS)})") from e
    return args


def load_args(values: dict[str, Any]) -> dict[str, Any]:
    """`load_model`'s keyword arguments from the loading keys of model_args."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key in ("trust_remote_code", "load_in_4bit"):
            out[key] = kv.read(_text(value), bool, key, "halluscope model_args")
        elif key == "dtype" and not isinstance(value, str):
            out[key] = value  # a torch.dtype, from Python
        elif key == "dtype":
            if value not in DTYPES:
                raise ValueError(f"halluscope model_args: dtype={value!r} is not one of {', '.join(DTYPES)}")
            if value != "auto":
                import torch

                value = getattr(torch, value)
            out[key] = value
        else:
            out[key] = value if key == "device_map" and isinstance(value, dict) else str(value)
    # Data parallel (accelerate launch / torchrun): one GPU per process, as lmms-eval's own models do.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "device_map" not in out:
        import torch

        if torch.cuda.is_available():
            out["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return out


def _count(value: Any, name: str) -> int:
    """A whole number >= 1 (lmms-eval passes --batch_size as text)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        also = " ('auto' is not supported)" if name == "batch_size" else ""
        raise ValueError(f"halluscope model_args: {name}={value!r} is not a whole number >= 1{also}")
    return number


class _Plan(NamedTuple):
    """One request, ready to batch: requests of one key decode together."""

    key: tuple[int, str]
    max_new_tokens: int
    args: dict[str, Any]
    prompt: str
    until: list[str]
    visual: tuple[Callable, Any, str, str]  # doc_to_visual, doc_id, task, split


class HalluscopeModel:
    """lmms-eval's simple-model interface over `VLMAdapter.generate(images, prompts, method, **args)`:
    `generate_until` batches the requests, fetching each image with the task's `doc_to_visual` from
    `self.task_dict[task][split][doc_id]` (lmms-eval fills `task_dict`)."""

    is_simple = True

    def __init__(self, pretrained: str | VLMAdapter = "tiny", method: str = "greedy", batch_size: int | str = 1,
                 max_new_tokens: int | None = None, max_batch_size: int | None = None, progress: bool = True,
                 **kwargs: Any) -> None:
        del max_batch_size  # lmms-eval's for batch_size=auto, which this model does not do
        loading = {k: kwargs.pop(k) for k in LOAD_ARGS if k in kwargs}
        self.method = str(method)
        self.method_args = method_args(self.method, kwargs)  # fail before loading a model
        self._method_fields = {f.name for f in fields(METHODS[self.method].config_cls)}
        self.batch_size_per_gpu = _count(batch_size, "batch_size")
        self.max_new_tokens = (DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None
                               else _count(max_new_tokens, "max_new_tokens"))
        self.progress = kv.read(_text(progress), bool, "progress", "halluscope model_args")
        if isinstance(pretrained, VLMAdapter):
            if any(v is not None for v in loading.values()):
                raise ValueError(f"halluscope: {', '.join(loading)} apply when loading a model, and pretrained= "
                                 "is one already loaded; load it with them instead")
            self.adapter = pretrained
        else:
            self.adapter = load_model(str(pretrained), **load_args(loading))
        self._rank = int(os.environ.get("RANK", "0"))
        self._world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.task_dict: dict[str, Any] = {}
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ what lmms-eval reads
    @property
    def model(self):
        return self.adapter.model

    @property
    def tokenizer(self):
        return self.adapter.tokenizer

    @property
    def device(self):
        return self.adapter.device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    # ------------------------------------------------------------------ requests
    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, stacklevel=3)

    def generation(self, gen_kwargs: dict[str, Any] | None) -> tuple[int, dict[str, Any], list[str]]:
        """(max_new_tokens, the method's arguments, stop strings) for a task's generation_kwargs."""
        gen = dict(gen_kwargs or {})
        until = gen.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        if not all(isinstance(s, str) for s in until):
            raise ValueError(f"halluscope: generation_kwargs until={gen['until']!r} is not a string or a list of them")
        n = gen.get("max_new_tokens") or self.max_new_tokens
        args = dict(self.method_args)
        temperature = float(gen.get("temperature") or 0)
        sample = gen.get("do_sample")
        sample = temperature > 0 if sample is None else bool(sample)
        # The task's sampling settings, where the method samples and model_args do not set `sample`.
        if sample and "sample" in self._method_fields and "sample" not in self.method_args:
            args["sample"] = True
            given = {"temperature": temperature if temperature > 0 else None, "top_p": gen.get("top_p"),
                     "top_k": gen.get("top_k")}
            args.update({k: v for k, v in given.items() if v is not None and k not in self.method_args})
        if int(gen.get("num_beams") or 1) > 1:
            self._warn_once(f"halluscope decodes one beam: num_beams={gen['num_beams']} is ignored")
        return int(n), args, until

    def _plan(self, args: tuple) -> _Plan:
        if len(args) != 6:
            raise ValueError(f"halluscope: a generate_until request of {len(args)} arguments; expected lmms-eval's "
                             "(context, gen_kwargs, doc_to_visual, doc_id, task, split)")
        context, gen_kwargs, doc_to_visual, doc_id, task, split = args
        n, method_args_, until = self.generation(gen_kwargs)
        prompt = context.replace(IMAGE_PLACEHOLDER, "").strip() if IMAGE_PLACEHOLDER in context else context
        key = (n, repr(sorted(method_args_.items())))
        return _Plan(key, n, method_args_, prompt, until, (doc_to_visual, doc_id, task, split))

    def image(self, doc_to_visual: Callable, doc_id: Any, task: str, split: str) -> ImageLike:
        """The one image of a document."""
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        flat = list(_flatten(visuals))
        if len(flat) != 1:
            raise ValueError(f"halluscope: document {doc_id} of task {task!r} has {len(flat)} visuals; its methods "
                             "take one image per question (tasks with several images or none are not supported)")
        visual = flat[0]
        if isinstance(visual, dict) or (isinstance(visual, str) and visual.lower().endswith(VIDEO_SUFFIXES)):
            kind = "audio" if isinstance(visual, dict) else "a video"
            raise ValueError(f"halluscope: document {doc_id} of task {task!r} gives {kind}; its methods take images")
        return visual

    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        """The answers to lmms-eval's generate_until requests, in their order. Requests with the same
        generation settings are batched (longest prompt first, to pad little)."""
        raw = [r.args if hasattr(r, "args") else tuple(r) for r in requests]
        plans = [self._plan(args) for args in raw]
        order = sorted(range(len(plans)), key=lambda i: (plans[i].key, -len(plans[i].prompt), i))
        batches = [chunk for _, same in groupby(order, key=lambda i: plans[i].key)
                   for chunk in _chunks(list(same), self.batch_size)]
        answers: list[str] = [""] * len(plans)
        show = self.progress and self.rank == 0 and len(plans) > 0
        with progress_bar() if show else nullcontext() as bar:
            task = None if bar is None else bar.add_task("halluscope: model responding", total=len(plans))
            for batch in batches:
                first = plans[batch[0]]
                images = [self.image(*plans[i].visual) for i in batch]
                texts = self.adapter.generate(images, [plans[i].prompt for i in batch], method=self.method,
                                              max_new_tokens=first.max_new_tokens, **first.args)
                for i, text in zip(batch, texts):
                    answers[i] = truncate(text, plans[i].until)
                    hook = getattr(self, "cache_hook", None)
                    if hook is not None:
                        hook.add_partial("generate_until", (raw[i][0], raw[i][1]), answers[i])
                if bar is not None:
                    bar.update(task, advance=len(batch))
        return answers

    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        raise NotImplementedError(LOGLIKELIHOOD_MESSAGE)

    def generate_until_multi_round(self, requests: Sequence[Any]) -> list[str]:
        raise NotImplementedError("halluscope: multi-round generation (generate_until_multi_round tasks) is not "
                                  "supported; run single-turn generation tasks")


def truncate(text: str, until: Iterable[str]) -> str:
    """`text` up to the first occurrence of any stop string (empty ones ignored)."""
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def _flatten(visuals: Any) -> Iterable[Any]:
    if visuals is None:
        return
    if isinstance(visuals, list | tuple):
        for v in visuals:
            yield from _flatten(v)
    else:
        yield visuals


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


try:
    from lmms_eval.api.model import lmms as _lmms
    from lmms_eval.api.registry import register_model as _register_model
except ImportError as e:
    _lmms, LMMS_EVAL_MISSING = None, f"lmms-eval is not installed ({_one_line(e)}); {INSTALL}"
except Exception as e:  # installed, but it fails to import (a broken dependency)
    _lmms, LMMS_EVAL_MISSING = None, f"lmms-eval does not import ({type(e).__name__}: {_one_line(e)})"
else:
    LMMS_EVAL_MISSING = None

if _lmms is not None:

    @_register_model("halluscope")
    class Halluscope(HalluscopeModel, _lmms):
        """lmms-eval's `--model halluscope` (see the module's docstring for its model_args)."""

        is_simple = True

        def __init__(self, pretrained: str | VLMAdapter = "tiny", method: str = "greedy", **kwargs: Any) -> None:
            _lmms.__init__(self)
            HalluscopeModel.__init__(self, pretrained, method, **kwargs)

else:

    class Halluscope(HalluscopeModel):  # type: ignore[no-redef]
        """lmms-eval's `--model halluscope`; here lmms-eval is missing, so it says what to install."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError(f"halluscope's lmms-eval model needs lmms-eval: {LMMS_EVAL_MISSING}")


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "LMMS_EVAL_MISSING", "Halluscope", "HalluscopeModel", "load_args",
           "method_args", "truncate"]
