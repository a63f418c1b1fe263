"""Fitting VTI directions (Liu et al., ICLR 2025; reference code: shengliu66/VTI, vti_utils/utils.py).

Visual direction, per vision-encoder layer: for each demo image, the layer's output averaged over
`trials` copies of the image with a random `mask_ratio` of its patches replaced by the image's
per-channel mean, minus the output for the clean image; then reduced over images (PCA or mean).
The average over heavily masked copies is a stable feature of the image: steering towards it makes
the vision features less sensitive to noise.

Textual direction, per decoder layer: the last token's output for the image, the prompt and a true
caption, minus that for a hallucinated caption; reduced over demos the same way.

Masking acts on the processor's pixel tensor, as in the reference code, so it follows each model's
own patch grid: (C, H, W) images are masked in patch_size squares, Qwen2-VL's flattened patches
(one row per patch, any number per image) row by row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..images import ImageLike, load_image
from ..world import SPLITS, Sample, World
from ..world import CAPTION_PROMPTS
from .directions import REDUCTIONS, Directions, principal_direction
from .hooks import record, text_layers, vision_layers

VISION_TOKENS = ("auto", "position", "mean")
PARTS = ("vision", "text")
Progress = Callable[[str, int, int], None]  # (part, done, total)


@dataclass
class FitConfig:
    """How to fit VTI directions. Defaults are the reference code's (shengliu66/VTI,
    experiments/eval/run_mmhal_vti.py: num_demos 50, num_trials 50, mask_ratio 0.99), except the
    seed (theirs is 42) and the reduction named "pca" (theirs is "pca+mean", see directions.py)."""

    n_images: int = field(default=50, metadata={"help": "demo images (and caption pairs) to fit on"})
    trials: int = field(default=50, metadata={"help": "masked copies per image for the visual direction"})
    mask_ratio: float = field(default=0.99, metadata={"help": "share of patches masked in each copy, in (0, 1]"})
    method: str = field(default="pca", metadata={"help": f"reduction over demos: {', '.join(REDUCTIONS)}"})
    seed: int = field(default=0, metadata={"help": "seed for the demo choice, the masks and the hallucinations"})
    vision_tokens: str = field(default="auto", metadata={
        "help": "'position': one direction per vision token position (the reference code, fixed-size towers); "
                "'mean': one per layer, averaged over tokens (any number of tokens, e.g. Qwen2-VL); "
                "'auto': position where the tower gives a fixed (batch, tokens, width) output, else mean"})
    prompt: str = field(default=CAPTION_PROMPTS["detailed"], metadata={"help": "prompt before the captions"})
    split: str = field(default="train", metadata={"help": "world split the demo images come from"})
    batch_size: int = field(default=16, metadata={"help": "images or caption pairs per forward pass"})
    parts: tuple[str, ...] = field(default=PARTS, metadata={"help": "which directions to fit: vision, text"})

    def __post_init__(self) -> None:
        def fail(name: str, fix: str) -> None:
            raise ValueError(f"FitConfig.{name}={getattr(self, name)!r} is invalid: {fix}")

        if self.method not in REDUCTIONS:
            fail("method", f"use one of {REDUCTIONS}")
        least = 1 if self.method == "mean" else 2
        if self.n_images < least:
            fail("n_images", f"method {self.method!r} needs at least {least} demo images")
        if self.trials < 1:
            fail("trials", "use at least 1 masked copy per image (the reference uses 50)")
        if not 0 < self.mask_ratio <= 1:
            fail("mask_ratio", "use a share of patches in (0, 1] (the reference uses 0.99)")
        if self.vision_tokens not in VISION_TOKENS:
            fail("vision_tokens", f"use one of {VISION_TOKENS}")
        if self.split not in SPLITS:
            fail("split", f"use one of {SPLITS}")
        if self.batch_size < 1:
            fail("batch_size", "use at least 1")
        self.parts = tuple(self.parts)
        if not self.parts or set(self.parts) - set(PARTS):
            fail("parts", f"use a non-empty subset of {PARTS}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Demo:
    """One demonstration: an image with a true and a hallucinated caption of it."""

    image: ImageLike
    caption: str
    hallucinated: str


def world_demos(world: World, n: int, seed: int = 0, split: str = "train",
                hallucinate: Callable[[Any], str] | None = None, style: str = "detailed") -> list[Demo]:
    """`n` demos from the world: images drawn by `seed` from `split`, the true caption from the
    grammar and a hallucinated one from `hallucinate(sample)` (default: `WorldHallucinator`)."""
    from .demos import WorldHallucinator

    hallucinate = hallucinate or WorldHallucinator(world, seed, style=style)
    rng = np.random.default_rng([seed, 11])
    indices = sorted(int(i) for i in rng.choice(world.config.train_size, size=n, replace=False))
    demos = []
    for i in indices:
        scene = world.scene(split, i)
        sample = Sample(image=world.render(scene), truth=scene)
        demos.append(Demo(sample.image, World.caption(scene, style), hallucinate(sample)))
    return demos


# ------------------------------------------------------------------------------------ inputs
def image_inputs(adapter, image: ImageLike) -> dict[str, torch.Tensor]:
    out = adapter.processor.image_processor(images=[load_image(image)], return_tensors="pt")
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def vision_patch_size(adapter) -> int:
    vcfg = adapter.model.config.vision_config
    return int(getattr(vcfg, "patch_size", 14))


def masked_copies(inputs: dict[str, torch.Tensor], k: int, ratio: float, patch_size: int, channels: int,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """`k` copies of one processed image, each with int(ratio * patches) random patches set to the
    image's per-channel mean (as the reference code's mask_patches)."""
    pv = inputs["pixel_values"].float()
    if "image_grid_thw" in inputs:  # Qwen2-VL: (patches, C * T * P * P), one row per patch
        rows, width = pv.shape
        mask = torch.zeros(k, rows, dtype=torch.bool)
        for j in range(k):
            mask[j, torch.randperm(rows, generator=generator)[: int(ratio * rows)]] = True
        fill = pv.reshape(rows, channels, -1).mean((0, 2)).repeat_interleave(width // channels)
        out = torch.where(mask[..., None], fill, pv).reshape(k * rows, width)
        return {**inputs, "pixel_values": out, "image_grid_thw": inputs["image_grid_thw"].repeat(k, 1)}
    if pv.dim() < 4 or pv.shape[0] != 1:
        raise ValueError(f"expected pixel_values of one image, (1, [crops,] C, H, W); got {tuple(pv.shape)}")
    height, width = pv.shape[-2:]
    gh, gw = height // patch_size, width // patch_size
    grid = torch.zeros(k, gh * gw, dtype=torch.bool)
    for j in range(k):
        grid[j, torch.randperm(gh * gw, generator=generator)[: int(ratio * gh * gw)]] = True
    pixels = grid.view(k, gh, gw).repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
    pixels = torch.nn.functional.pad(pixels, (0, width - gw * patch_size, 0, height - gh * patch_size))
    pixels = pixels.view(k, *([1] * (pv.dim() - 3)), height, width)
    fill = pv.mean((-2, -1), keepdim=True)
    out = torch.where(pixels, fill, pv.expand(k, *pv.shape[1:]))
    extra = {key: v.repeat(k, *([1] * (v.dim() - 1))) for key, v in inputs.items() if key != "pixel_values"}
    return {**extra, "pixel_values": out}


# ------------------------------------------------------------------------------------ vision
def per_image_states(h: torch.Tensor, inputs: dict[str, torch.Tensor], k: int, tokens: str) -> torch.Tensor:
    """A layer's output for k images -> (k, T, D) kept per position or (k, D) averaged over tokens."""
    h = h.float()
    if "image_grid_thw" in inputs:  # (all patches, D): split per image
        sizes = inputs["image_grid_thw"].prod(-1).tolist()
        return torch.stack([part.mean(0) for part in torch.split(h, sizes)])
    h = h.reshape(k, -1, h.shape[-1])  # (k, [crops *] T, D)
    return h if tokens == "position" else h.mean(1)


def resolve_vision_tokens(requested: str, inputs: dict[str, torch.Tensor]) -> str:
    # Towers that take flattened patches (Qwen2-VL) give a number of tokens that varies per image, and so do
    # processors that split an image into a varying number of tiles (pixel_values (images, tiles, C, H, W) or
    # deeper: LLaVA-NeXT, LLaVA-OneVision, Idefics3, SmolVLM, Mllama).
    varying = "image_grid_thw" in inputs or inputs["pixel_values"].dim() >= 5
    if requested == "position" and varying:
        raise ValueError("this model's images give a varying number of vision tokens (flattened patches or tiles), "
                         "so they have no fixed token positions; use vision_tokens='mean' (or 'auto')")
    if requested != "auto":
        return requested
    return "mean" if varying else "position"


def encode_images(adapter, inputs: dict[str, torch.Tensor]) -> None:
    """Run the vision tower on processed images (for the hooks recording its layers): through the model's
    `get_image_features` where it takes the image inputs alone, else the tower itself with the inputs it
    names (InstructBLIP's also wants the Q-Former's text; Mllama has no `get_image_features`)."""
    inputs = adapter.to_device(inputs)
    encode = getattr(adapter.model, "get_image_features", None)
    if encode is not None and "qformer_input_ids" not in inspect.signature(encode).parameters:
        encode(**inputs)
        return
    tower = adapter.vision_tower
    names = inspect.signature(tower.forward).parameters
    tower(**{k: v for k, v in inputs.items() if k in names})


@torch.inference_mode()
def fit_vision(adapter, images: Sequence[ImageLike], config: FitConfig, progress: Progress | None = None
               ) -> tuple[torch.Tensor, str]:
    """(directions, tokens): (layers, [T,] D) visual directions, and 'position' or 'mean'."""
    tokens = resolve_vision_tokens(config.vision_tokens, image_inputs(adapter, images[0]))
    layers = vision_layers(adapter)
    generator = torch.Generator().manual_seed(config.seed)
    channels = int(getattr(adapter.model.config.vision_config, "in_channels",
                           getattr(adapter.model.config.vision_config, "num_channels", 3)))
    patch = vision_patch_size(adapter)
    diffs = []
    with record(list(layers)) as outputs:
        def states(inputs: dict[str, torch.Tensor], k: int) -> torch.Tensor:
            encode_images(adapter, inputs)
            return torch.stack([per_image_states(h, inputs, k, tokens) for h in outputs], 1)  # (k, L, ...)

        for done, image in enumerate(images, 1):
            clean_inputs = image_inputs(adapter, image)
            clean = states(clean_inputs, 1)[0]
            total = torch.zeros_like(clean)
            for start in range(0, config.trials, config.batch_size):
                k = min(config.batch_size, config.trials - start)
                masked = masked_copies(clean_inputs, k, config.mask_ratio, patch, channels, generator)
                total += states(masked, k).sum(0)
            diffs.append(total / config.trials - clean)
            if progress:
                progress("vision", done, len(images))
    shapes = {tuple(d.shape) for d in diffs}
    if len(shapes) > 1:
        raise ValueError(f"the demo images give different numbers of vision tokens {sorted(shapes)}; "
                         "use vision_tokens='mean'")
    return principal_direction(torch.stack(diffs), config.method), tokens


# ------------------------------------------------------------------------------------ text
def _continuation(adapter, prompt: str, caption: str) -> str:
    head = adapter.prompt_text(prompt)
    return head + ("" if head.endswith((" ", "\n")) else " ") + caption


@torch.inference_mode()
def fit_text(adapter, demos: Sequence[Demo], config: FitConfig, progress: Progress | None = None) -> torch.Tensor:
    """(layers, D) textual directions: last-token outputs for true minus hallucinated captions."""
    layers = text_layers(adapter)
    diffs = []
    with record(list(layers)) as outputs:
        for start in range(0, len(demos), config.batch_size):
            chunk = demos[start: start + config.batch_size]
            images = [[load_image(d.image)] for d in chunk] * 2
            texts = [_continuation(adapter, config.prompt, d.caption) for d in chunk]
            texts += [_continuation(adapter, config.prompt, d.hallucinated) for d in chunk]
            batch = adapter.process(texts, images)
            # Left padding: the last position is every sequence's last token.
            adapter.model(**adapter.to_device(batch), use_cache=False, logits_to_keep=1)
            last = torch.stack([h[:, -1].float() for h in outputs], 1)  # (2B, L, D)
            diffs.append(last[: len(chunk)] - last[len(chunk):])
            if progress:
                progress("text", start + len(chunk), len(demos))
    return principal_direction(torch.cat(diffs), config.method)


# ------------------------------------------------------------------------------------ both
def fit_directions(adapter, config: FitConfig | None = None, demos: Sequence[Demo] | None = None, *,
                   world: World | None = None, hallucinate: Callable[[Any], str] | None = None,
                   progress: Progress | None = None) -> Directions:
    """Fit VTI directions on `adapter`.

    Demos default to `config.n_images` world images with grammar captions and hallucinated
    captions from `hallucinate(sample)` (default: `WorldHallucinator`); pass `demos` (images with
    true and hallucinated captions) to fit on real data instead.
    """

    config = config or FitConfig()
    if demos is None:
        world = world or World()
        demos = world_demos(world, config.n_images, config.seed, config.split, hallucinate)
        source = {"demos": "world", "world_seed": world.seed, "split": config.split,
                  "hallucinate": "world" if hallucinate is None else getattr(hallucinate, "__name__", "custom")}
    else:
        demos = list(demos)
        source = {"demos": "custom"}
    vision = text = None
    tokens = None
    if "vision" in config.parts:
        vision, tokens = fit_vision(adapter, [d.image for d in demos], config, progress)
    if "text" in config.parts:
        text = fit_text(adapter, demos, config, progress)
    metadata = {
        "format": "halluscope-vti/1", "model": adapter.name, "model_type": adapter.model.config.model_type,
        "vision_layers": None if vision is None else int(vision.shape[0]),
        "text_layers": None if text is None else int(text.shape[0]),
        "vision_tokens": tokens, "vision_positions": int(vision.shape[1]) if tokens == "position" else None,
        "n_images": len(demos), "trials": config.trials, "mask_ratio": config.mask_ratio,
        "method": config.method, "seed": config.seed, "prompt": config.prompt, **source,
        "reference": "Liu et al., ICLR 2025, arXiv:2410.15778; github.com/shengliu66/VTI",
        "halluscope": __version__,
    }
    return Directions(vision=vision, text=text, metadata=metadata)
