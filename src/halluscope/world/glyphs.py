"""The world's object classes, drawn as 7x7 glyphs, and its colours.

Each glyph is a bitmap ('#' = ink). Large objects are drawn at scale 2 (14 px), small ones at
scale 1 (7 px), so that an object fits inside one 16 px cell (one vision patch of the built-in
model). The shapes are chosen to differ in more than one stroke so a small vision tower can tell
them apart, yet share parts (stems, rings, boxes) so that faint or half-hidden ones get confused.
"""

from __future__ import annotations

import numpy as np

_BITMAPS: dict[str, str] = {
    "fork": ".#.#.#. .#.#.#. .#####. ...#... ...#... ...#... ...#...",
    "knife": "...##.. ..###.. ..###.. ..###.. ...#... ...#... ...#...",
    "cup": "....... #####.. #...### #...#.# #...### .###... .......",
    "plate": "..###.. .#...#. #.....# #.....# #.....# .#...#. ..###..",
    "car": "....... ..###.. .#####. ####### ####### .#...#. .......",
    "bus": "####### #.#.#.# ####### ####### ####### .#...#. .......",
    "sign": "...#... ..###.. .#####. ####### .#####. ..###.. ...#...",
    "lamp": "..###.. ..###.. ...#... ...#... ...#... ...#... ..###..",
    "tree": "...#... ..###.. .#####. ####### ...#... ...#... ...#...",
    "bench": "....... ####### ####### .#...#. .#...#. .#...#. .......",
    "dog": "#...... ##...#. .#####. .#####. .#...#. .#...#. .......",
    "ball": "..###.. .#####. ####### ####### ####### .#####. ..###..",
    "book": "####### #.....# #.##### #.....# #.##### #.....# #######",
    "pen": "......# .....#. ....#.. ...#... ..#.... .#..... #......",
    "phone": ".#####. .#...#. .#...#. .#...#. .#...#. .#####. ...#...",
    "clock": "..###.. .#.#.#. #..#..# #..##.# #.....# .#...#. ..###..",
}

CLASSES: tuple[str, ...] = tuple(_BITMAPS)

PLURALS: dict[str, str] = {c: c + "s" for c in CLASSES} | {
    "knife": "knives",
    "bus": "buses",
    "bench": "benches",
}

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 40),
    "green": (40, 185, 60),
    "blue": (55, 95, 235),
    "yellow": (235, 215, 40),
    "purple": (165, 60, 205),
    "orange": (245, 140, 30),
}


def glyph(name: str) -> np.ndarray:
    """The 7x7 boolean bitmap of a class."""
    rows = _BITMAPS[name].split()
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


GLYPHS: dict[str, np.ndarray] = {name: glyph(name) for name in CLASSES}
