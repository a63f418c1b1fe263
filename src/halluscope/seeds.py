"""Named random streams. Data that must be reproducible step by step (for exact resume) draws from
`rng(seed, stream, step)`, a numpy generator keyed by the run's seed and `stream + step`; the offsets
keep the streams of different consumers apart, so that a new consumer only needs a new name here.

A step index stays far below the next offset (10**9), so two streams never share a key.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    STEP = 0  # a trainer's own data: instruction-tuning batches, the preference pairs drawn per step
    STAGE0 = 10**9  # stage 0 of the built-in model: the images of each step
    HACL = 2 * 10**9  # HACL's connector stage: captions and their hallucinated mirrors


def rng(seed: int, stream: Stream, step: int) -> np.random.Generator:
    """The generator of step `step` of `stream` in the run seeded `seed`."""
    return np.random.default_rng([seed, int(stream) + step])


__all__ = ["Stream", "rng"]
