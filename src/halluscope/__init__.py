"""halluscope: diagnose, measure and reduce hallucination in vision-language models."""

from . import metrics
from .models import load_model
from .world import World

__version__ = "0.1.0"
__all__ = ["World", "load_model", "metrics", "__version__"]
