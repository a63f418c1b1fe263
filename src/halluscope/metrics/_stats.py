"""Uncertainty of a metric: a percentile bootstrap."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


def _resamples(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(n, size=n)


def _interval(stats, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(items: Sequence[Any], statistic: Callable[[list[Any]], float], n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic` over `items` resampled with
    replacement (pass one item per image to resample images rather than questions)."""
    items = list(items)
    if not items:
        return (0.0, 0.0)
    return _interval([statistic([items[i] for i in idx]) for idx in _resamples(len(items), n_boot, seed)], level)


def bootstrap_sums_ci(counts, statistic: Callable[[np.ndarray], np.ndarray], n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """`bootstrap_ci` for a statistic of column sums of per-item counts, e.g. accuracy from
    per-image (correct, asked): the same resamples for the same seed, but each resample's sums come
    from one matrix product instead of a Python call over the items (thousands of times faster on
    a benchmark's worth of images).

    counts: (n_items, k); statistic: maps (n_boot, k) column sums to (n_boot,) values (use
    `ratio` for the divisions)."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2:
        raise ValueError(f"counts must be (n_items, k), got shape {counts.shape}")
    n = len(counts)
    if not n:
        return (0.0, 0.0)
    return _interval(statistic(_weights(n, n_boot, seed) @ counts), level)


@functools.lru_cache(maxsize=16)
def _weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n): how often each resample draws each item; a benchmark scores many metrics and
    subsets over the same items, so the draws are made once."""
    weights = np.stack([np.bincount(idx, minlength=n) for idx in _resamples(n, n_boot, seed)]).astype(float)
    weights.flags.writeable = False
    return weights


def ratio(numerator, denominator) -> np.ndarray:
    """numerator / denominator elementwise, 0 where the denominator is 0 (as the metric functions do)."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
