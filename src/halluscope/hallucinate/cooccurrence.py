"""Which COCO categories go together: the built-in table, and the function that computes one from
your own ground-truth objects."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

# The 80 COCO categories, each with its five most associated others (cosine of image co-occurrence
# counts, pairs seen at least twice, categories whose names contain each other left out), computed
# from the COCO 2014 ground-truth objects of the 1,481 CHAIR and POPE images (COCO annotations,
# CC BY 4.0). `cooccurrence_table(gt_objects)` computes the same from your own data.
COCO_COOCCURRENCE: dict[str, tuple[str, ...]] = {
    "person": ("car", "handbag", "sports ball", "chair", "backpack"),
    "bicycle": ("motorcycle", "person", "car", "bus", "handbag"),
    "car": ("truck", "person", "traffic light", "bus", "train"),
    "motorcycle": ("bicycle", "person", "car", "bus", "cow"),
    "airplane": ("truck", "person", "suitcase", "car", "backpack"),
    "bus": ("car", "traffic light", "person", "truck", "bicycle"),
    "train": ("car", "bus", "person", "traffic light", "truck"),
    "truck": ("car", "traffic light", "person", "airplane", "bus"),
    "boat": ("person", "surfboard", "bench", "bird", "suitcase"),
    "traffic light": ("car", "bus", "truck", "stop sign", "person"),
    "fire hydrant": ("stop sign", "car", "traffic light", "bus", "boat"),
    "stop sign": ("car", "traffic light", "fire hydrant", "truck", "bicycle"),
    "parking meter": ("car", "truck", "bus", "person"),
    "bench": ("person", "backpack", "baseball bat", "boat", "car"),
    "bird": ("boat", "person", "teddy bear", "car", "bottle"),
    "cat": ("couch", "tv", "laptop", "keyboard", "book"),
    "dog": ("frisbee", "person", "bed", "car", "cat"),
    "horse": ("person", "car", "cow", "traffic light", "dog"),
    "sheep": ("truck", "bus", "cow", "person", "car"),
    "cow": ("horse", "motorcycle", "sheep", "person", "bicycle"),
    "elephant": ("person", "handbag", "backpack", "motorcycle", "sports ball"),
    "bear": ("cake", "vase", "person", "tie", "potted plant"),
    "zebra": ("giraffe",),
    "giraffe": ("zebra", "person"),
    "backpack": ("handbag", "skis", "person", "suitcase", "bench"),
    "umbrella": ("person", "handbag", "bicycle", "car", "backpack"),
    "handbag": ("backpack", "person", "suitcase", "umbrella", "car"),
    "tie": ("person", "wine glass", "handbag", "cake", "cup"),
    "suitcase": ("handbag", "backpack", "person", "book", "bus"),
    "frisbee": ("dog", "person", "car", "orange", "truck"),
    "skis": ("snowboard", "backpack", "person", "dog", "bench"),
    "snowboard": ("skis", "person", "backpack", "surfboard", "bench"),
    "sports ball": ("tennis racket", "baseball bat", "baseball glove", "person", "chair"),
    "kite": ("surfboard", "person", "umbrella", "car"),
    "baseball bat": ("baseball glove", "sports ball", "person", "bench", "chair"),
    "baseball glove": ("baseball bat", "sports ball", "person", "bench", "dog"),
    "skateboard": ("person", "bicycle", "car", "traffic light", "bench"),
    "surfboard": ("person", "kite", "boat", "umbrella", "snowboard"),
    "tennis racket": ("sports ball", "person", "chair", "bench", "backpack"),
    "bottle": ("cup", "spoon", "dining table", "sink", "bowl"),
    "wine glass": ("knife", "dining table", "bottle", "pizza", "cup"),
    "cup": ("dining table", "bottle", "spoon", "bowl", "knife"),
    "fork": ("knife", "dining table", "pizza", "cup", "sandwich"),
    "knife": ("spoon", "fork", "dining table", "bowl", "cup"),
    "spoon": ("bowl", "knife", "cup", "bottle", "oven"),
    "bowl": ("spoon", "dining table", "knife", "cup", "sandwich"),
    "banana": ("orange", "apple", "bowl", "dining table", "spoon"),
    "apple": ("orange", "banana", "bowl", "keyboard", "dining table"),
    "sandwich": ("hot dog", "bowl", "dining table", "cup", "knife"),
    "orange": ("apple", "banana", "bowl", "dining table", "person"),
    "broccoli": ("carrot", "dining table", "bowl", "sandwich", "knife"),
    "carrot": ("broccoli", "dining table", "bowl", "oven", "orange"),
    "hot dog": ("sandwich", "bowl", "cup", "person", "dining table"),
    "pizza": ("dining table", "fork", "cup", "wine glass", "knife"),
    "donut": ("sandwich", "spoon", "cake", "fork", "dining table"),
    "cake": ("knife", "dining table", "spoon", "cup", "bowl"),
    "chair": ("dining table", "couch", "person", "tv", "book"),
    "couch": ("remote", "chair", "tv", "book", "vase"),
    "potted plant": ("vase", "couch", "chair", "dining table", "tv"),
    "bed": ("book", "chair", "dog", "couch", "cat"),
    "dining table": ("cup", "chair", "bowl", "knife", "pizza"),
    "toilet": ("sink", "toothbrush", "bottle", "bowl", "cat"),
    "tv": ("mouse", "laptop", "book", "keyboard", "remote"),
    "laptop": ("keyboard", "mouse", "tv", "dining table", "chair"),
    "mouse": ("keyboard", "laptop", "tv", "dining table", "book"),
    "remote": ("couch", "tv", "book", "chair", "person"),
    "keyboard": ("mouse", "laptop", "tv", "dining table", "book"),
    "cell phone": ("person", "laptop", "handbag", "dining table", "mouse"),
    "microwave": ("toaster", "oven", "refrigerator", "bottle", "carrot"),
    "oven": ("microwave", "refrigerator", "toaster", "spoon", "bottle"),
    "toaster": ("microwave", "oven", "tv"),
    "sink": ("toilet", "bottle", "toothbrush", "oven", "hair drier"),
    "refrigerator": ("oven", "microwave", "sink", "bottle", "bowl"),
    "book": ("tv", "couch", "chair", "remote", "bed"),
    "clock": ("couch", "book", "person", "chair", "vase"),
    "vase": ("potted plant", "couch", "dining table", "chair", "book"),
    "scissors": ("spoon", "person", "bowl", "dining table", "book"),
    "teddy bear": ("book", "bed", "couch", "person", "bird"),
    "hair drier": ("sink", "person"),
    "toothbrush": ("sink", "toilet", "bottle", "cup", "person"),
}
COCO_CATEGORIES = tuple(COCO_COOCCURRENCE)


def cooccurrence_table(gt_objects: Mapping[Any, Iterable[str]] | Iterable[Iterable[str]], top: int = 5,
                       min_count: int = 2) -> dict[str, tuple[str, ...]]:
    """category -> its `top` most associated categories, from per-image ground-truth objects
    (a mapping image id -> categories, as CHAIR's files hold, or a list of category lists).

    Association is the cosine of co-occurrence counts, n(a, b) / sqrt(n(a) n(b)): raw counts would
    pair everything with the most frequent category ("person")."""
    images = gt_objects.values() if isinstance(gt_objects, Mapping) else gt_objects
    freq: Counter = Counter()
    pairs: defaultdict[str, Counter] = defaultdict(Counter)
    for objs in images:
        cats = set(objs)
        freq.update(cats)
        for a in cats:
            pairs[a].update(b for b in cats if b != a)
    table = {}
    for a in sorted(freq):
        scored = [(n / math.sqrt(freq[a] * freq[b]), b) for b, n in pairs[a].items()
                  if n >= min_count and a not in b and b not in a]
        table[a] = tuple(b for _, b in sorted(scored, key=lambda sb: (-sb[0], sb[1]))[:top])
    return table


__all__ = ["COCO_CATEGORIES", "COCO_COOCCURRENCE", "cooccurrence_table"]
