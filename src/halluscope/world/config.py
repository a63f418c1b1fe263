"""The world's fixed geometry and its knobs (`WorldConfig`), with the defaults the built-in model is
trained with."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config
from .glyphs import CLASSES, COLORS

# Where one object can be relative to another (`scene.relation`), and each relation's inverse.
RELATIONS = ("left of", "right of", "above", "below")
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# The largest number a caption or a count prior can say ("five").
MAX_COUNT = 5

# An image is a GRID x GRID grid of CELL px cells; each object sits inside one cell, so it falls
# inside one vision patch of the built-in model.
IMAGE_SIZE = 64
GRID = 4
CELL = IMAGE_SIZE // GRID

DEFAULT_SCENES: dict[str, tuple[str, ...]] = {
    "kitchen": ("fork", "knife", "cup", "plate"),
    "street": ("car", "bus", "sign", "lamp"),
    "park": ("tree", "bench", "dog", "ball"),
    "office": ("book", "pen", "phone", "clock"),
}
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("fork", "knife"),
    ("cup", "plate"),
    ("car", "bus"),
    ("dog", "ball"),
    ("book", "pen"),
)
DEFAULT_COLOR_PRIORS: dict[str, str] = {
    "tree": "green",
    "sign": "red",
    "bus": "yellow",
    "ball": "orange",
    "cup": "blue",
    "book": "purple",
}

# A is usually REL B: the fork left of its knife (as laid on a table), the cup above its plate (on it, seen
# from the side), the car left of the bus, the dog left of its ball.
DEFAULT_SPATIAL_PRIORS: tuple[tuple[str, str, str], ...] = (
    ("fork", "left of", "knife"),
    ("cup", "above", "plate"),
    ("car", "left of", "bus"),
    ("dog", "left of", "ball"),
)
# Classes that usually come in twos: one per scene type whose members are not all in pairs.
DEFAULT_COUNT_PRIORS: dict[str, int] = {"lamp": 2, "bench": 2, "clock": 2}

_PROBABILITIES = (
    "scene_strength", "cooccurrence_strength", "color_prior_strength", "spatial_prior_strength",
    "count_prior_strength", "duplicate_prob", "small_prob", "faint_prob", "faint_level", "occlude_prob", "yes_bias",
    "test_breaking_fraction",
)


@dataclass
class WorldConfig(Config):
    """The world's knobs. Defaults make the built-in model hallucinate for the reasons real VLMs do.
    `WorldConfig.help()` gives each knob's default and help text (docs/world.md is generated from it)."""

    min_objects: int = field(default=1, metadata={"help": "fewest objects in an image"})
    max_objects: int = field(default=5, metadata={"help": "most objects in an image (<= 16 cells)"})
    scenes: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_SCENES),
        metadata={"help": "scene type -> member classes; members co-occur"},
    )
    scene_strength: float = field(
        default=0.9, metadata={"help": "probability that an object comes from the image's scene"}
    )
    cooccurrence_pairs: tuple[tuple[str, str], ...] = field(
        default=DEFAULT_PAIRS, metadata={"help": "pairs whose members usually appear together"}
    )
    cooccurrence_strength: float = field(
        default=0.95, metadata={"help": "probability that a pair member brings its partner"}
    )
    color_priors: dict[str, str] = field(
        default_factory=lambda: dict(DEFAULT_COLOR_PRIORS),
        metadata={"help": "class -> its usual colour"},
    )
    color_prior_strength: float = field(
        default=0.85, metadata={"help": "probability that a class with a prior has its usual colour"}
    )
    spatial_priors: tuple[tuple[str, str, str], ...] = field(
        default=DEFAULT_SPATIAL_PRIORS,
        metadata={"help": "(a, relation, b): a is usually on that side of b, when both are in an image once"},
    )
    spatial_prior_strength: float = field(
        default=0.9, metadata={"help": "probability that such a pair is placed on its usual sides (else at random)"}
    )
    count_priors: dict[str, int] = field(
        default_factory=lambda: dict(DEFAULT_COUNT_PRIORS),
        metadata={"help": "class -> its usual number of objects (2 to 5, room permitting under max_objects)"},
    )
    count_prior_strength: float = field(
        default=0.85, metadata={"help": "probability that a present class with a count prior has its usual number, "
                                        "room permitting"}
    )
    duplicate_prob: float = field(
        default=0.15, metadata={"help": "probability of adding another instance of a present class"}
    )
    small_prob: float = field(default=0.25, metadata={"help": "probability that an object is small"})
    faint_prob: float = field(default=0.12, metadata={"help": "probability that an object is faint"})
    faint_level: float = field(
        default=0.3, metadata={"help": "ink opacity of a faint object (1 = full colour)"}
    )
    occlude_prob: float = field(
        default=0.12, metadata={"help": "probability that an object is half hidden by a grey block"}
    )
    noise_max: float = field(
        default=24.0, metadata={"help": "largest per-image Gaussian pixel noise std (0-255 scale)"}
    )
    yes_bias: float = field(
        default=0.6,
        metadata={"help": "share of 'yes' answers among training existence questions (0.5 = none)"},
    )
    test_breaking_fraction: float = field(
        default=0.5,
        metadata={"help": "share of val/test images that break a bias (lone pair member, odd colour, odd side, "
                          "odd count)"},
    )
    train_size: int = field(default=200_000, metadata={"help": "number of distinct training scenes"})

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= GRID * GRID:
            self.fail("max_objects", f"need 1 <= min_objects <= max_objects <= {GRID * GRID}")
        for name in _PROBABILITIES:
            self.check_range(name, 0, 1, "it is a probability")
        if self.noise_max < 0:
            self.fail("noise_max", "use a non-negative std")
        # Knobs parsed from the command line or JSON arrive as lists; the sampler indexes tuples.
        self.scenes = {k: tuple(v) for k, v in self.scenes.items()}
        self.cooccurrence_pairs = tuple(tuple(p) for p in self.cooccurrence_pairs)
        for scene, members in self.scenes.items():
            if not members or any(c not in CLASSES for c in members):
                self.fail("scenes", f"scene {scene!r} must list classes from {CLASSES}")
        for pair in self.cooccurrence_pairs:
            if len(pair) != 2 or any(c not in CLASSES for c in pair) or pair[0] == pair[1]:
                self.fail("cooccurrence_pairs", f"each pair must be two different classes from {CLASSES}")
        for cls, color in self.color_priors.items():
            if cls not in CLASSES or color not in COLORS:
                self.fail("color_priors", f"map classes {CLASSES} to colours {tuple(COLORS)}")
        self.spatial_priors = tuple(tuple(p) for p in self.spatial_priors)
        seen: set[frozenset[str]] = set()
        for prior in self.spatial_priors:
            if (len(prior) != 3 or prior[0] not in CLASSES or prior[2] not in CLASSES or prior[0] == prior[2]
                    or prior[1] not in RELATIONS):
                self.fail("spatial_priors", f"each prior must be (a, relation, b): two different classes from "
                                            f"{CLASSES} and a relation from {RELATIONS}, "
                                            "e.g. ('fork', 'left of', 'knife')")
            if frozenset((prior[0], prior[2])) in seen:
                self.fail("spatial_priors", f"the pair {prior[0]}-{prior[2]} has two priors; keep one")
            seen.add(frozenset((prior[0], prior[2])))
        for cls, n in self.count_priors.items():
            if cls not in CLASSES:
                self.fail("count_priors", f"map classes from {CLASSES} to numbers, e.g. {{'lamp': 2}}")
            if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_COUNT:
                self.fail("count_priors", f"{cls!r} needs a whole number from 2 to {MAX_COUNT} (a prior of one is "
                                          "no prior; drop the class instead)")

    def usual_color(self, cls: str) -> str | None:
        """The colour the world's prior gives `cls`, or None when it has none."""
        return self.color_priors.get(cls)

    def usual_count(self, cls: str) -> int | None:
        """The number of objects the world's prior gives `cls`, or None when it has none."""
        return self.count_priors.get(cls)

    def usual_relation(self, a: str, b: str) -> str | None:
        """Where the world's prior puts `a` relative to `b` (one of `RELATIONS`; either order of a
        spatial prior's pair), or None."""
        for x, rel, y in self.spatial_priors:
            if (x, y) == (a, b):
                return rel
            if (y, x) == (a, b):
                return INVERSE[rel]
        return None

    def spatial_pairs(self) -> list[tuple[str, str]]:
        """(a, b) of every spatial prior, in its order."""
        return [(a, b) for a, _, b in self.spatial_priors]

    def partners(self) -> dict[str, str]:
        """class -> its co-occurrence partner, both ways."""
        out: dict[str, str] = {}
        for a, b in self.cooccurrence_pairs:
            out[a], out[b] = b, a
        return out


__all__ = ["CELL", "DEFAULT_COLOR_PRIORS", "DEFAULT_COUNT_PRIORS", "DEFAULT_PAIRS", "DEFAULT_SCENES",
           "DEFAULT_SPATIAL_PRIORS", "GRID", "IMAGE_SIZE", "INVERSE", "MAX_COUNT", "RELATIONS", "WorldConfig"]
