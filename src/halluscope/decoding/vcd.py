"""VCD: visual contrastive decoding.

Sicong Leng, Hang Zhang, Guanzheng Chen, Xin Li, Shijian Lu, Chunyan Miao, Lidong Bing.
"Mitigating Object Hallucinations in Large Vision-Language Models through Visual Contrastive
Decoding". CVPR 2024. arXiv:2311.16922. Code: github.com/DAMO-NLP-SG/VCD.

    s = (1 + alpha) * logit(y | v, x) - alpha * logit(y | v', x),   -inf where p(y | v, x) < beta * max p

v' is v after `noise_step` steps of a 1000-step forward diffusion: sqrt(abar_t) v + sqrt(1 - abar_t) eps,
on the pixel tensor the model receives (after its processor's normalisation, as VCD's
`add_diffusion_noise` does to LLaVA's `image_tensor`), so the grid and image tokens are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch
from PIL import Image

from .contrast import ContrastConfig, contrast_scores
from .engine import Branch, BranchMethod, image_seed

DIFFUSION_STEPS = 1000


@lru_cache(maxsize=1)
def alphas_cumprod(num_steps: int = DIFFUSION_STEPS) -> torch.Tensor:
    """abar_t of VCD's schedule: betas spaced as a sigmoid over linspace(-6, 6) from 1e-5 to 5e-3
    (not linear), abar_t = prod_{s <= t} (1 - beta_s)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, num_steps)) * (0.5e-2 - 1e-5) + 1e-5
    return torch.cumprod(1 - betas, 0)


def add_diffusion_noise(pixels: torch.Tensor, step: int, noise: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """q(x_t | x_0) at `step` (0..999): sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * noise."""
    abar = alphas_cumprod()[step]
    if noise is None:
        noise = torch.randn(pixels.shape, generator=generator)
    out = abar.sqrt() * pixels.float() + (1 - abar).sqrt() * noise.to(pixels.device, torch.float32)
    return out.to(pixels.dtype)


def vcd_scores(logits_clean: torch.Tensor, logits_distorted: torch.Tensor, alpha: float = 1.0,
               beta: float = 0.1) -> torch.Tensor:
    """VCD's next-token scores: (1 + alpha) * l(v) - alpha * l(v'), with -inf for the tokens whose
    clean probability is below beta times the largest clean probability."""
    return contrast_scores(logits_clean, logits_distorted, alpha, beta)


def noise_like(rows: torch.Tensor, adapter, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise for one image's rows of pixel_values. Processors that repeat a still image
    over a temporal patch (Qwen2-VL) get the same noise on every copy, as if noising the image."""
    ip = getattr(adapter.processor, "image_processor", None)
    t, p = getattr(ip, "temporal_patch_size", None), getattr(ip, "patch_size", None)
    if rows.dim() == 2 and isinstance(t, int) and isinstance(p, int) and rows.shape[1] % (t * p * p) == 0:
        c = rows.shape[1] // (t * p * p)
        noise = torch.randn(rows.shape[0], c, 1, p * p, generator=generator)
        return noise.expand(-1, c, t, p * p).reshape(rows.shape)
    return torch.randn(rows.shape, generator=generator)


@dataclass
class VCDConfig(ContrastConfig):
    """Visual contrastive decoding (Leng et al., CVPR 2024): contrast the next-token logits on the
    image with those on a diffusion-noised copy, within the clean logits' plausibility set.

    Defaults: alpha = 1, beta = 0.1, noise step 500 of 1000 (the paper's settings; the code's
    `cd_alpha` default is 0.5)."""

    _paper = {
        "title": "Mitigating Object Hallucinations in Large Vision-Language Models through Visual Contrastive Decoding",
        "authors": "Sicong Leng, Hang Zhang, Guanzheng Chen, Xin Li, Shijian Lu, Chunyan Miao, Lidong Bing",
        "venue": "CVPR 2024",
        "url": "https://arxiv.org/abs/2311.16922",
    }

    noise_step: int = field(default=500, metadata={"help": "diffusion step of the distorted image, 0..999"})
    noise_seed: int = field(default=0, metadata={
        "help": "seed of the noise; each image's noise also depends on its pixels, so results do not depend "
                "on the batch"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.noise_step, int) or not 0 <= self.noise_step < DIFFUSION_STEPS:
            self.fail("noise_step", f"must be an integer in [0, {DIFFUSION_STEPS - 1}]; the paper uses 500")


class VCD(BranchMethod):
    """Branches: the clean image, and the same prompt on the noised image."""

    name = "vcd"
    config_cls = VCDConfig

    def distort(self, rows: torch.Tensor, image: Image.Image, adapter) -> torch.Tensor:
        generator = torch.Generator().manual_seed(image_seed(image, self.config.noise_seed))
        return add_diffusion_noise(rows, self.config.noise_step, noise_like(rows, adapter, generator))

    def branches(self, adapter, images, prompts):
        return [Branch(prompts, images), Branch(prompts, images, distort=self.distort)]

    def scores(self, logits: torch.Tensor, step: int, samples: torch.Tensor | None = None) -> torch.Tensor:
        return vcd_scores(logits[0], logits[1], self.config.alpha, self.config.beta)
