"""Steering: VTI (visual and textual intervention, Liu et al., ICLR 2025) through forward hooks.

    from halluscope.steering import FitConfig, fit_directions, vti

    directions = fit_directions(adapter, FitConfig(n_images=50))      # or Directions.load(path)
    directions.save("directions.safetensors")
    with vti(adapter, directions, alpha=0.9, beta=0.9):
        adapter.generate(images, prompts, method="greedy")           # any decoding method
"""

from .directions import REDUCTIONS, Directions, principal_direction
from .fit import Demo, FitConfig, fit_directions, fit_text, fit_vision, masked_copies, world_demos
from .demos import DEMO_KINDS as HALLUCINATION_TYPES, WorldHallucinator, hallucinated_caption
from .hooks import record, steer, text_layers, vision_layers, vti
from .method import VTI, VTIConfig

__all__ = [
    "Demo", "Directions", "FitConfig", "HALLUCINATION_TYPES", "REDUCTIONS", "VTI", "VTIConfig", "WorldHallucinator",
    "fit_directions", "fit_text", "fit_vision", "hallucinated_caption", "masked_copies", "principal_direction",
    "record", "steer", "text_layers", "vision_layers", "vti", "world_demos",
]
