"""Analyses of the image side: the vision features' sensitivity to small perturbations (VTI, Liu et al.,
ICLR 2025), the modality gap between image and caption representations (HACL, Jiang et al., CVPR 2024),
and the answers' reliance on the language prior without the image (VCD, Leng et al., CVPR 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..images import ImageLike, load_image
from ..steering.fit import (
    encode_images, image_inputs, masked_copies, per_image_states, resolve_vision_tokens, vision_patch_size,
)
from ..steering.hooks import record, vision_layers
from ._forced import last_state


# ------------------------------------------------------------------------------ feature stability
def _rankdata(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for v in np.unique(x):  # ties share their mean rank
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def correlation(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """Pearson and Spearman correlation (None where either side is constant or there are < 3 pairs)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return {"pearson": None, "spearman": None, "n": len(a)}
    return {"pearson": float(np.corrcoef(a, b)[0, 1]),
            "spearman": float(np.corrcoef(_rankdata(a), _rankdata(b))[0, 1]), "n": len(a)}


@torch.no_grad()
def feature_variances(adapter, images: Sequence[ImageLike], trials: int = 8, mask_ratio: float = 0.25,
                      seed: int = 0) -> list[dict[str, float]]:
    """Per image: the variance of the vision encoder's output (its last layer) over `trials` copies with a
    random `mask_ratio` of the patches set to the image's mean colour (VTI's `masked_copies`), averaged over
    tokens and channels; raw, and relative to the clean output's mean square."""
    layer = vision_layers(adapter)[-1]
    generator = torch.Generator().manual_seed(seed)
    vcfg = adapter.model.config.vision_config
    channels = int(getattr(vcfg, "in_channels", getattr(vcfg, "num_channels", 3)))
    patch = vision_patch_size(adapter)
    out = []
    with record([layer]) as outputs:
        for image in images:
            inputs = image_inputs(adapter, image)
            tokens = resolve_vision_tokens("auto", inputs)
            encode_images(adapter, inputs)
            clean = per_image_states(outputs[0], inputs, 1, tokens)[0]
            masked = masked_copies(inputs, trials, mask_ratio, patch, channels, generator)
            encode_images(adapter, masked)
            copies = per_image_states(outputs[0], masked, trials, tokens)
            var = float(copies.var(0, unbiased=False).mean())
            out.append({"variance": var, "relative": var / max(float(clean.pow(2).mean()), 1e-12)})
    return out


def feature_stability(adapter, images: Sequence[ImageLike], hallucination_rates: Sequence[float | None] | None = None,
                      trials: int = 8, mask_ratio: float = 0.25, high: float = 1.5, seed: int = 0) -> dict[str, Any]:
    """VTI's measurement: per image the vision features' variance under random patch masking
    (`feature_variances`, relative); the share of high-variance images (above `high` times the median);
    and the correlation of an image's variance with its hallucination rate (false claims / claims)."""
    per = feature_variances(adapter, images, trials, mask_ratio, seed)
    rel = np.array([p["relative"] for p in per])
    median = float(np.median(rel)) if len(rel) else 0.0
    threshold = high * median
    out: dict[str, Any] = {
        "trials": trials, "mask_ratio": mask_ratio, "n_images": len(per),
        "variance": [p["variance"] for p in per], "relative_variance": rel.tolist(),
        "mean": float(rel.mean()) if len(rel) else None, "median": median, "high_threshold": threshold,
        "share_high": float((rel > threshold).mean()) if len(rel) and threshold > 0 else 0.0,
    }
    if hallucination_rates is not None:
        pairs = [(v, h) for v, h in zip(rel, hallucination_rates) if h is not None]
        out["hallucination_rate"] = list(hallucination_rates)
        out["correlation"] = correlation([p[0] for p in pairs], [p[1] for p in pairs])
        hi = [h for v, h in pairs if v > threshold]
        lo = [h for v, h in pairs if v <= threshold]
        out["rate_high"] = float(np.mean(hi)) if hi else None
        out["rate_rest"] = float(np.mean(lo)) if lo else None
    return out


# ------------------------------------------------------------------------------ modality gap
def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The area under the ROC curve (ties count half): 0.5 where the two classes' scores are alike."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return 0.5
    greater = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return float(greater / (len(pos) * len(neg)))


def _lbfgs(params: list[torch.Tensor], loss_fn, steps: int) -> None:
    """Minimise `loss_fn()` over `params` in place with L-BFGS (strong Wolfe line search)."""
    opt = torch.optim.LBFGS(params, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, bias) of an L2-regularised logistic regression, by L-BFGS."""
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    bias = torch.zeros((), dtype=x.dtype, requires_grad=True)
    _lbfgs([w, bias], lambda: torch.nn.functional.binary_cross_entropy_with_logits(x @ w + bias, y)
           + l2 * w.pow(2).sum(), steps)
    return w.detach(), bias.detach()


def probe_auc(a: np.ndarray, b: np.ndarray, folds: int = 5, l2: float = 1e-2, steps: int = 200, seed: int = 0
              ) -> float:
    """The cross-validated AUC of a linear probe (logistic regression) telling rows of `a` (label 0) from
    rows of `b` (label 1), where row i of `a` and of `b` form a pair that always falls in the same fold."""
    n = min(len(a), len(b))
    if n < 2:
        return 0.5
    folds = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    scores, labels = [], []
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        x = np.concatenate([a[train], b[train]])
        y = np.concatenate([np.zeros(len(train)), np.ones(len(train))])
        mu, sd = x.mean(0), x.std(0) + 1e-6
        w, bias = fit_logistic(torch.tensor((x - mu) / sd, dtype=torch.float64), torch.tensor(y, dtype=torch.float64),
                               l2, steps)
        with torch.no_grad():
            for rows, label in ((a[test], 0), (b[test], 1)):
                scores += (torch.tensor((rows - mu) / sd, dtype=torch.float64) @ w + bias).tolist()
                labels += [label] * len(rows)
    return auc(scores, labels)


def probe_accuracy(x: torch.Tensor, y: torch.Tensor, train_share: float = 2 / 3, l2: float = 1e-4, steps: int = 200
                   ) -> float:
    """Held-out accuracy of a linear probe (multinomial logistic regression, L2-regularised, by L-BFGS) from the
    rows of `x` to the integer labels `y`: the first `train_share` of the rows fit it (standardised by their mean
    and std), the rest score it."""
    x, y = x.detach().double(), y.long()
    n = int(train_share * len(x))
    if not 0 < n < len(x):
        raise ValueError(f"train_share={train_share} leaves no rows to fit or to score ({len(x)} rows)")
    x = (x - x[:n].mean(0)) / (x[:n].std(0) + 1e-6)
    w = torch.zeros(x.shape[1], int(y.max()) + 1, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(w.shape[1], dtype=x.dtype, requires_grad=True)
    _lbfgs([w, bias], lambda: torch.nn.functional.cross_entropy(x[:n] @ w + bias, y[:n]) + l2 * w.pow(2).sum(), steps)
    with torch.no_grad():
        return ((x[n:] @ w + bias).argmax(-1) == y[n:]).double().mean().item()


def gap_statistics(image: np.ndarray, correct: np.ndarray, hallucinated: np.ndarray, seed: int = 0
                   ) -> dict[str, Any]:
    """Centroid distances, the probe's AUC (correct vs hallucinated) and a 2-D PCA projection of states."""
    c_img, c_ok, c_bad = image.mean(0), correct.mean(0), hallucinated.mean(0)

    def dist(u, v):
        return float(np.linalg.norm(u - v))

    allx = np.concatenate([image, correct, hallucinated])
    centred = allx - allx.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.zeros((len(allx), 2))
    n1, n2 = len(image), len(image) + len(correct)
    scale = float(np.linalg.norm(allx, axis=1).mean()) or 1.0
    return {
        "centroid_distance": {"image_correct": dist(c_img, c_ok), "image_hallucinated": dist(c_img, c_bad),
                              "correct_hallucinated": dist(c_ok, c_bad)},
        "mean_norm": scale,
        "probe_auc": probe_auc(correct, hallucinated, seed=seed),
        "projection": {"image": xy[:n1].round(4).tolist(), "correct": xy[n1:n2].round(4).tolist(),
                       "hallucinated": xy[n2:].round(4).tolist()},
    }


def modality_gap(adapter, images: Sequence[ImageLike], correct: Sequence[str], hallucinated: Sequence[str],
                 seed: int = 0) -> dict[str, Any]:
    """HACL's Fig. 1: the last-token states (final layer) of image-only sequences (`images`, an empty prompt)
    and of correct and hallucinated captions without the image; `gap_statistics` of them (the probe pairs
    the i-th correct and hallucinated captions: pass mirrors of one caption in the same order)."""
    if not len(images) or not len(correct) or not len(hallucinated):
        return {"n": 0, "note": "no images or caption pairs"}
    img = np.stack([last_state(adapter, im, "", with_image=True).numpy() for im in images])
    ok = np.stack([last_state(adapter, None, c, with_image=False).numpy() for c in correct])
    bad = np.stack([last_state(adapter, None, c, with_image=False).numpy() for c in hallucinated])
    return {"n": len(images), "n_correct": len(correct), "n_hallucinated": len(hallucinated),
            **gap_statistics(img, ok, bad, seed)}


# ------------------------------------------------------------------------------ language prior
def noise_image(image: ImageLike, seed: int) -> Image.Image:
    """A fully noised stand-in of `image`: uniform random pixels of its size (VCD's noise at its last step)."""
    size = load_image(image).size
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@torch.no_grad()
def yes_no_without_image(adapter, questions: Sequence[str], batch_size: int = 16) -> list[str]:
    """"yes"/"no" per question asked without any image: the larger of the yes and no next-token probabilities."""
    out = []
    for i in range(0, len(questions), batch_size):
        chunk = [q + adapter.yes_no_suffix for q in questions[i : i + batch_size]]
        batch = adapter.to_device(adapter.process([adapter.prompt_text(q, image=False) for q in chunk],
                                                  [[] for _ in chunk]))
        logp = adapter.model(**batch, use_cache=False).logits[:, -1].float().log_softmax(-1)
        yes, no = logp[:, adapter._yes_ids].logsumexp(-1), logp[:, adapter._no_ids].logsumexp(-1)
        out += ["yes" if y >= n else "no" for y, n in zip(yes.tolist(), no.tolist())]
    return out


def language_prior(adapter, questions: Sequence[dict[str, Any]], batch_size: int = 16, seed: int = 0
                   ) -> dict[str, Any]:
    """VCD's language-prior reliance on yes/no questions (`image`, `text`, `label`): the answers with the
    image, without it and with a fully noised image: each one's yes rate and accuracy, agreement with the
    answers given the image, and the share of false positives (label no, answered yes with the image) that
    persist without the image and with noise."""
    images, texts = [q["image"] for q in questions], [q["text"] for q in questions]
    labels = [q["label"] for q in questions]
    with_image = []
    noised = []
    for i in range(0, len(questions), batch_size):
        with_image += adapter.answer_yes_no(images[i : i + batch_size], texts[i : i + batch_size])
        noise = [noise_image(im, seed + i + k) for k, im in enumerate(images[i : i + batch_size])]
        noised += adapter.answer_yes_no(noise, texts[i : i + batch_size])
    without = yes_no_without_image(adapter, texts, batch_size)
    n = len(questions)

    def rate(xs, value="yes"):
        return sum(x == value for x in xs) / n if n else 0.0

    def agree(xs):
        return sum(a == b for a, b in zip(xs, with_image)) / n if n else 0.0

    def acc(xs):
        return sum(a == b for a, b in zip(xs, labels)) / n if n else 0.0

    fps = [i for i in range(n) if labels[i] == "no" and with_image[i] == "yes"]
    return {
        "n": n,
        "yes_rate": {"image": rate(with_image), "no_image": rate(without), "noise": rate(noised)},
        "accuracy": {"image": acc(with_image), "no_image": acc(without), "noise": acc(noised)},
        "agreement_with_image": {"no_image": agree(without), "noise": agree(noised)},
        "false_positives": len(fps),
        "false_positives_persist": {
            "no_image": sum(without[i] == "yes" for i in fps) / len(fps) if fps else None,
            "noise": sum(noised[i] == "yes" for i in fps) / len(fps) if fps else None},
    }


__all__ = ["auc", "correlation", "feature_stability", "feature_variances", "gap_statistics", "language_prior",
           "modality_gap", "noise_image", "probe_accuracy", "probe_auc", "yes_no_without_image"]
