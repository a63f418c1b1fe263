"""The decoding engine: a method's branches stacked on the batch axis of one forward pass.

A contrastive method runs the model on several versions of each sample at once, e.g. VCD on the
clean image and on a noised copy. The engine renders every branch's prompts, builds ALL of them
with the model's own processor in one padded call (so each row gets its own left padding, image
tokens and, for Qwen2-VL, its own M-RoPE positions), and decodes with one KV cache:

    rows = [branch 0: samples 0..B-1 | branch 1: samples 0..B-1 | ...]

At every step the method's `scores(logits, step, samples)` turns the (n_branches, b, V) last-position
logits of the b samples still decoding into (b, V) next-token scores (-inf = excluded); then the
logits processors that `generate` built from the model's `generation_config` and its arguments run on
those scores with the clean branch's ids, exactly as in transformers' own search (repetition penalty,
no-repeat n-grams, min_new_tokens, suppressed tokens, and when sampling the temperature / top-k /
top-p warpers). The engine picks a token per sample (argmax, or a draw), feeds the SAME token to every
branch of that sample, and stops a sample where `generate`'s stopping criteria say so (its EOS ids,
max_new_tokens, stop strings); later tokens are padding. A stopped sample's rows leave the batch and
the KV cache (public `Cache.reorder_cache`), so a batch of long and short answers does not pay for
the short ones.

The loop runs inside `model.generate(custom_generate=...)`: transformers prepares the cache, the
attention mask, the position ids (M-RoPE included), `logits_to_keep`, the processors and the stopping
criteria exactly as for its own search, and the loop steps with the public
`prepare_inputs_for_generation`. Nothing in transformers is patched. The processors see every row of
the stacked batch, finished samples included, as in transformers' search; a method's scores stand in
each sample's clean row, whose result is kept.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image

from ..images import ImageLike, load_image
from .protocol import DecodingMethod, SamplingConfig

# scores(logits (n_branches, b, V), step, samples (b,): which of the B samples the rows are)
#   -> (b, V) next-token scores, -inf = excluded
ScoreFn = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


class DecodeInputs(dict):
    """Model inputs (a plain dict of tensors, for `model(**inputs)` and `generate`) that also keep
    the images and prompts they came from: methods with extra branches rebuild from those.
    `adapter.generate` makes one; methods that build their own inputs get it without tensors."""

    def __init__(self, tensors: dict[str, torch.Tensor], images: Sequence[ImageLike], prompts: Sequence[str]):
        super().__init__(tensors)
        self.images = list(images)
        self.prompts = list(prompts)


def source(inputs: dict, method: str) -> tuple[list[ImageLike], list[str]]:
    """The images and prompts behind `inputs`, or an error that says how to pass them."""
    if not isinstance(inputs, DecodeInputs):
        raise TypeError(
            f"method {method!r} builds extra branches from the images and prompts, so it needs "
            "halluscope.decoding.DecodeInputs(tensors, images, prompts), not a plain dict; "
            "call adapter.generate(images, prompts, method=...) to get one")
    return inputs.images, inputs.prompts


# --------------------------------------------------------------------------------- branches
@dataclass
class Branch:
    """One version of every sample in the batch.

    prompts: the user text per sample. images: one per sample, or None for the prompt without
    an image. distort: applied to each of this branch's images in the pixel tensor the model
    receives, as (rows of one image, image, adapter) -> rows."""

    prompts: Sequence[str]
    images: Sequence[ImageLike] | None
    distort: Callable[[torch.Tensor, Image.Image, Any], torch.Tensor] | None = None


def image_rows(batch: dict[str, torch.Tensor]) -> list[slice]:
    """Which rows of `pixel_values` belong to each image, in order. Qwen2-VL-style processors
    flatten patches (rows per image = t * h * w of `image_grid_thw`); the others put one image
    (or one image's tiles) per leading index."""
    if "image_grid_thw" in batch:
        ends = batch["image_grid_thw"].prod(-1).cumsum(0).tolist()
        return [slice(a, b) for a, b in zip([0, *ends[:-1]], ends)]
    return [slice(i, i + 1) for i in range(batch["pixel_values"].shape[0])]


def build_branches(adapter, branches: Sequence[Branch]) -> dict[str, torch.Tensor]:
    """All branches' inputs from ONE processor call: rows branch-major, left-padded together.

    Branches with the same prompts and images as the first (VCD's, which differ in pixels only)
    are processed once and repeated: every tensor a processor returns is indexed by row, image or
    image patch on its first axis, so repeating along it repeats rows, images and patches in order."""
    texts: list[str] = []
    per_text: list[list[Image.Image]] = []  # each prompt's images (none for a prompt without the image)
    pil: list[Image.Image] = []
    owner: list[Branch] = []
    loaded: dict[int, Image.Image] = {}  # branches share images: read each file once
    first = branches[0]
    repeats = all(b.prompts is first.prompts and b.images is first.images for b in branches)
    for branch in branches[:1] if repeats else branches:
        if branch.images is None:
            texts += [adapter.prompt_text(p, image=False) for p in branch.prompts]
            per_text += [[] for _ in branch.prompts]
            continue
        if len(branch.images) != len(branch.prompts):
            raise ValueError(f"a branch has {len(branch.images)} images for {len(branch.prompts)} prompts")
        texts += [adapter.prompt_text(p) for p in branch.prompts]
        for im in branch.images:
            if id(im) not in loaded:
                loaded[id(im)] = load_image(im)
            pil.append(loaded[id(im)])
            per_text.append([loaded[id(im)]])
        owner += [branch] * len(branch.images)
    batch = adapter.process(texts, per_text)
    if repeats and len(branches) > 1:
        batch = {k: torch.cat([v] * len(branches)) for k, v in batch.items()}
        pil, owner = pil * len(branches), [b for b in branches for _ in first.images or ()]
    if any(b.distort is not None for b in owner):
        rows = image_rows(batch)
        if len(rows) != len(pil):
            raise ValueError(f"found {len(rows)} images in the processor's pixel_values for {len(pil)} images given; "
                             "this model's pixel layout is not supported by image distortions")
        pixels = batch["pixel_values"].clone()
        for sl, im, branch in zip(rows, pil, owner):
            if branch.distort is not None:
                pixels[sl] = branch.distort(pixels[sl], im, adapter)
        if pixels.dim() >= 5:
            # Processors that split images into tiles pad each row's tiles with all-zero images, which the model
            # then skips (Idefics3 and SmolVLM find them by being zero): padding must stay zero.
            padding = (batch["pixel_values"] == 0).flatten(-3).all(-1)
            pixels[padding] = 0
        batch["pixel_values"] = pixels
    return adapter.to_device(batch)


def image_seed(image: Image.Image, seed: int) -> int:
    """A seed from an image's pixels: the same image gets the same noise in any batch."""
    h = hashlib.blake2b(image.tobytes(), digest_size=8, key=str(seed).encode())
    h.update(repr(image.size).encode())
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


# --------------------------------------------------------------------------------- decoding
@dataclass
class DecodeResult:
    tokens: torch.Tensor  # (B, T) new tokens; padding after a sample's EOS
    logits: list[torch.Tensor] | None = None  # per step (n_branches, B, V), when asked for


def eos_ids(adapter) -> list[int]:
    eos = adapter.model.generation_config.eos_token_id
    if eos is None:
        eos = adapter.tokenizer.eos_token_id
    return [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))


def _pad_id(adapter) -> int:
    pad = adapter.tokenizer.pad_token_id
    if pad is None:
        eos = eos_ids(adapter)
        pad = eos[0] if eos else 0
    return pad


def _cache_key(kwargs: dict[str, Any]) -> str:
    """The KV cache's name among the model kwargs: `cache` from transformers 5.24 on, before that
    `past_key_values` (the old name still works there, with a deprecation warning)."""
    return "cache" if "cache" in kwargs else "past_key_values"


def _advance(outputs, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Model kwargs for one more token: the cache, and one more column of the attention mask,
    position ids (2-D, or 3/4 rows for M-RoPE: last + 1) and token-type ids."""
    for key in ("cache", "past_key_values"):  # the output's own field (keys() holds no deprecated alias)
        if key in outputs.keys():
            kwargs[key] = outputs[key]
    if (mask := kwargs.get("attention_mask")) is not None:
        kwargs["attention_mask"] = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], -1)
    if (pos := kwargs.get("position_ids")) is not None:
        kwargs["position_ids"] = torch.cat([pos, pos[..., -1:] + 1], -1)
    if (tt := kwargs.get("token_type_ids")) is not None:
        kwargs["token_type_ids"] = torch.cat([tt, tt[:, -1:]], -1)
    if (mm := kwargs.get("mm_token_type_ids")) is not None:
        kwargs["mm_token_type_ids"] = torch.cat([mm, mm.new_zeros(mm.shape[0], 1)], -1)
    if (cross := kwargs.get("cross_attention_mask")) is not None:
        # Mllama: (rows, tokens, images, tiles); a new token sees the images the last one saw, as in its own search.
        kwargs["cross_attention_mask"] = torch.cat([cross, cross[:, -1:]], 1)
    return kwargs


# Model kwargs that follow the rows (batch axis first; position ids: the one before last).
_PER_ROW = ("attention_mask", "position_ids", "token_type_ids", "mm_token_type_ids", "cross_attention_mask")
# Model kwargs that only the prefill reads (the image inputs; InstructBLIP's prompt embeddings, which hold its
# query outputs; Mllama's tile layout, whose image states its cross-attention layers cache), left alone when rows go.
_PREFILL_ONLY = {"image_grid_thw", "video_grid_thw", "batch_num_images", "inputs_embeds", "aspect_ratio_ids",
                 "aspect_ratio_mask"}


def _prunable(kwargs: dict[str, Any]) -> bool:
    """Whether finished rows can be dropped: a dynamic KV cache, and no tensor input of unknown
    layout that later steps would still read (then all rows stay, as in `generate`)."""
    from transformers import DynamicCache

    try:
        from transformers.generation.utils import MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL as prefill_only
    except ImportError:
        return False
    known = set(_PER_ROW) | _PREFILL_ONLY | set(prefill_only)
    return isinstance(kwargs.get(_cache_key(kwargs)), DynamicCache) and all(
        k in known for k, v in kwargs.items() if isinstance(v, torch.Tensor) or k == "mm_encoder_outputs")


def _keep_rows(kwargs: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """Model kwargs (and the cache) restricted to `rows`."""
    kwargs[_cache_key(kwargs)].reorder_cache(rows)  # index_select on the batch axis of every layer
    for key in _PER_ROW:
        if (value := kwargs.get(key)) is not None:
            kwargs[key] = value[..., rows, :] if key == "position_ids" and value.dim() == 3 else value[rows]
    return kwargs


@torch.no_grad()
def decode(adapter, inputs: dict[str, torch.Tensor], n_branches: int, scores: ScoreFn, max_new_tokens: int,
           sampling: SamplingConfig | None = None, keep_logits: bool = False, use_cache: bool = True,
           min_new_tokens: int = 0, prune: bool = True) -> DecodeResult:
    """Decode the B samples whose n_branches versions are stacked in `inputs` (branch-major).

    One forward pass per step over all n_branches * rows of the unfinished samples with one KV
    cache; `scores(logits, step, samples)` combines the branches' last-position logits of the
    samples still decoding (their indices in 0..B-1), `generate`'s logits processors adjust the
    result, and every branch of a sample continues with the chosen token. A sample stops where
    `generate`'s stopping criteria say (then padding) and, with `prune`, leaves the batch and the
    cache, so later steps cost less. `min_new_tokens` goes to `generate`, whose processor excludes
    EOS until then. `use_cache=False` reruns the whole sequence every step (for testing the cache).
    `keep_logits` keeps every step's raw (n_branches, B, V) logits, NaN for samples that have stopped."""
    sampling = sampling or SamplingConfig()
    n_rows = inputs["input_ids"].shape[0]
    if n_rows % n_branches:
        raise ValueError(f"{n_rows} rows do not split into {n_branches} branches")
    batch = n_rows // n_branches
    pad = _pad_id(adapter)
    if sampling.sample and sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    result = DecodeResult(tokens=torch.empty(batch, 0, dtype=torch.long), logits=[] if keep_logits else None)

    def loop(model, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=False,
             streamer=None, **model_kwargs):
        # `generate` has prepared the cache, mask, positions and logits_to_keep in model_kwargs, and the
        # processors and stopping criteria from the generation config, for all n_rows rows.
        device = input_ids.device
        samples = torch.arange(batch, device=device)  # the samples whose rows are in the model's batch
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        tokens = torch.full((batch, max_new_tokens), pad, dtype=torch.long, device=device)
        # Every row's sequence, never pruned (a finished sample gets padding, as in transformers' search):
        # the processors keep per-row state for these rows (a repetition penalty, each row's padding).
        sequences = input_ids
        can_prune = prune and use_cache and _prunable(model_kwargs)
        model_inputs = model.prepare_inputs_for_generation(input_ids, is_first_iteration=True, **model_kwargs)
        for step in range(max_new_tokens):
            outputs = model(**model_inputs, return_dict=True)
            logits = outputs.logits[:, -1].float().view(n_branches, len(samples), -1)
            # Without pruning, stopped samples stay in the batch, fed padding; `scores` sees the others.
            live = ~finished[samples]
            decoding = samples[live]
            if keep_logits:
                full = logits.new_full((n_branches, batch, logits.shape[-1]), math.nan)
                full[:, decoding] = logits[:, live]
                result.logits.append(full)
            step_scores = scores(logits[:, live], step, decoding)
            if logits_processor:
                # The processors may keep per-row state for all n_rows rows (a repetition penalty keeps each
                # row's padding length), so they get every row: the method's scores in each decoding sample's
                # clean row (row i: branch 0 of sample i, whose prompt is the plain one), which alone is kept.
                rows = step_scores.new_zeros(n_rows, step_scores.shape[-1])
                rows[decoding] = step_scores
                step_scores = logits_processor(sequences, rows)[decoding]
            if sampling.sample:
                chosen = torch.multinomial(step_scores.softmax(-1), 1).squeeze(1)
            else:
                chosen = step_scores.argmax(-1)
            token = torch.full((batch,), pad, dtype=torch.long, device=device)
            token[decoding] = chosen
            tokens[:, step] = token
            sequences = torch.cat([sequences, token.repeat(n_branches)[:, None]], -1)
            finished |= stopping_criteria(sequences[:batch], None)  # as transformers' search, without kept scores
            if finished.all():
                return tokens[:, :step + 1]
            input_ids = torch.cat([input_ids, token[samples].repeat(n_branches)[:, None]], -1)
            model_kwargs = _advance(outputs, model_kwargs)
            if can_prune and finished[samples].any():
                keep = (~finished[samples]).nonzero().squeeze(1)
                rows = (keep + len(samples) * torch.arange(n_branches, device=keep.device)[:, None]).flatten()
                input_ids, samples = input_ids[rows], samples[keep]
                model_kwargs = _keep_rows(model_kwargs, rows)
            model_inputs = model.prepare_inputs_for_generation(
                input_ids, next_sequence_length=1 if model_kwargs.get("use_cache") else None, **model_kwargs)
        return tokens

    extra = {"min_new_tokens": min_new_tokens} if min_new_tokens else {}
    result.tokens = adapter.model.generate(
        **inputs, custom_generate=loop,
        generation_config=generation_config(adapter, max_new_tokens=max_new_tokens, num_beams=1, pad_token_id=pad,
                                            use_cache=use_cache, **sampling.generate_kwargs(), **extra))
    return result


def generation_config(adapter, **settings: Any):
    """The model's own generation config with `settings` on a copy, passed to `generate` whole: transformers
    takes a config or loose settings, not both, and InstructBLIP's `generate` hands over to its language model,
    which would otherwise read the language model's config."""
    config = copy.deepcopy(adapter.model.generation_config)
    unused = config.update(**settings)
    if unused:
        raise TypeError(f"not generation settings: {sorted(unused)}")
    return config


def first_step_logits(adapter, inputs: dict[str, torch.Tensor], n_branches: int) -> torch.Tensor:
    """(n_branches, B, V) raw logits for the first new token: the first step of `decode`."""
    captured = decode(adapter, inputs, n_branches, lambda logits, step, samples: logits[0], 1, keep_logits=True)
    return captured.logits[0]


# --------------------------------------------------------------------------------- methods
class BranchMethod(DecodingMethod):
    """A method that runs its branches stacked in one batch and combines their logits.

    Subclasses set `name` and `config_cls` (a `SamplingConfig`), and give `branches(adapter, images,
    prompts)` (branch 0 is the clean input) and `scores(logits, step, samples)`."""

    name: ClassVar[str] = "branches"
    builds_own_inputs = True  # all branches come from one processor call: the clean-only tensors would go unused

    def branches(self, adapter, images: list, prompts: list[str]) -> list[Branch]:
        raise NotImplementedError

    def scores(self, logits: torch.Tensor, step: int, samples: torch.Tensor | None = None) -> torch.Tensor:
        """(b, V) scores from the (n_branches, b, V) logits of `samples` (indices into the batch)."""
        raise NotImplementedError

    def stacked(self, adapter, inputs) -> tuple[dict[str, torch.Tensor], int]:
        images, prompts = source(inputs, self.name)
        branches = self.branches(adapter, images, prompts)
        return build_branches(adapter, branches), len(branches)

    def generate(self, adapter, inputs, max_new_tokens: int, min_new_tokens: int = 0) -> torch.Tensor:
        stacked, n = self.stacked(adapter, inputs)
        return decode(adapter, stacked, n, self.scores, max_new_tokens, self.config,
                      min_new_tokens=min_new_tokens).tokens

    def first_token_scores(self, adapter, inputs) -> torch.Tensor:
        stacked, n = self.stacked(adapter, inputs)
        return self.scores(first_step_logits(adapter, stacked, n), 0, None)


__all__ = ["Branch", "BranchMethod", "DecodeInputs", "DecodeResult", "SamplingConfig", "build_branches", "decode",
           "eos_ids", "first_step_logits", "image_rows", "image_seed", "source"]
