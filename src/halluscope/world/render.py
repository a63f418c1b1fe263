"""Pixels: a scene drawn as coloured glyphs on a dark canvas, with faint ink, grey occluders and
Gaussian noise."""

from __future__ import annotations

import numpy as np

from .config import IMAGE_SIZE
from .glyphs import COLORS, GLYPHS
from .scene import Scene

BACKGROUND = (28, 28, 32)
OCCLUDER = (120, 120, 120)


def draw(scene: Scene, faint_level: float, rng: np.random.Generator) -> np.ndarray:
    """The image of `scene` as a (64, 64, 3) uint8 array; `rng` picks which half an occluder hides
    and the noise."""
    canvas = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    canvas[:] = BACKGROUND
    for obj in scene.objects:
        bitmap = GLYPHS[obj.cls]
        if obj.size == "large":
            bitmap = bitmap.repeat(2, axis=0).repeat(2, axis=1)
        h, w = bitmap.shape
        top, left = obj.y - h // 2, obj.x - w // 2
        region = canvas[top : top + h, left : left + w]
        alpha = faint_level if obj.faint else 1.0
        ink = np.array(COLORS[obj.color], dtype=np.float32)
        region[bitmap] = (1 - alpha) * region[bitmap] + alpha * ink
        if obj.occluded:
            # A grey block hides one half of the glyph: the top, bottom, left or right half.
            side = rng.integers(4)
            hh, hw = h // 2, w // 2
            box = [(slice(0, hh), slice(None)), (slice(h - hh, h), slice(None)),
                   (slice(None), slice(0, hw)), (slice(None), slice(w - hw, w))][side]
            region[box] = OCCLUDER
    if scene.noise > 0:
        canvas += rng.normal(0.0, scene.noise, canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).round().astype(np.uint8)


__all__ = ["BACKGROUND", "OCCLUDER", "draw"]
