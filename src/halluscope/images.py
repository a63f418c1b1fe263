"""Images in, PIL images out: the one place that opens an image file (a leaf: no torch)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

ImageLike = Image.Image | str | os.PathLike


def load_image(image: ImageLike) -> Image.Image:
    """A PIL image from an image or a path; a missing or unreadable file names itself."""
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist; check the --images folder")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # PIL raises several types for corrupt files
        raise ValueError(f"image file {str(path)!r} could not be decoded ({e}); replace or skip it") from e


__all__ = ["ImageLike", "load_image"]
