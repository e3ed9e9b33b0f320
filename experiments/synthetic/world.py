"""The synthetic world: a few object kinds, colours and coarse positions, drawn as simple glyphs with PIL.

Every image is a white canvas with one to three objects, each in its own slot (left, right, top, bottom, center),
so the truth of any sentence about the image can be checked exactly. Object kinds map onto COCO class names, so
the CHAIR metric's synonym table recognises them in answers.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass


# kind (the word used in descriptions) -> COCO class name (what CHAIR counts)
KINDS = {
    "ball": "sports ball",
    "cup": "cup",
    "clock": "clock",
    "kite": "kite",
    "apple": "apple",
    "stop sign": "stop sign",
    "umbrella": "umbrella",
    "bottle": "bottle",
    "book": "book",
}

# No "orange": it is also a COCO class and would read as a fruit to the CHAIR synonym table.
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 40, 170),
    "black": (20, 20, 20),
}

# position -> the phrase used in descriptions; slots are the cells of a plus sign on a 3x3 grid
POSITIONS = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
_SLOT_CELLS = {"left": (0, 1), "right": (2, 1), "top": (1, 0), "bottom": (1, 2), "center": (1, 1)}

DEFAULT_CANVAS = 64
MAX_OBJECTS = 3


@dataclass(frozen=True)
class SceneObject:
    kind: str
    colour: str
    position: str
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, inclusive of x0/y0

    @property
    def coco(self) -> str:
        return KINDS[self.kind]


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    canvas: int = DEFAULT_CANVAS

    def at(self, position: str) -> SceneObject | None:
        for obj in self.objects:
            if obj.position == position:
                return obj
        return None

    def kinds(self) -> set[str]:
        return {obj.kind for obj in self.objects}

    def coco_objects(self) -> list[str]:
        """Sorted unique COCO class names: the ground truth CHAIR compares against."""
        return sorted({obj.coco for obj in self.objects})

    def to_json(self) -> list[dict]:
        return [asdict(obj) for obj in self.objects]

    @classmethod
    def from_json(cls, objects: list[dict], canvas: int = DEFAULT_CANVAS) -> Scene:
        return cls(tuple(SceneObject(o["kind"], o["colour"], o["position"], tuple(o["box"])) for o in objects), canvas)


def sample_scene(rng: random.Random, canvas: int = DEFAULT_CANVAS, max_objects: int = MAX_OBJECTS) -> Scene:
    """One to `max_objects` objects of distinct kinds, each in its own slot, with a little jitter in place and size.

    The jitter makes every image unique even when two scenes share their content.
    """
    count = rng.randint(1, max_objects)
    kinds = rng.sample(sorted(KINDS), count)
    positions = rng.sample(sorted(POSITIONS), count)
    return place_objects(kinds, positions, rng, canvas)


def place_objects(kinds: list[str], positions: list[str], rng: random.Random, canvas: int) -> Scene:
    """A scene of `kinds` at `positions`: each object jittered inside its cell, with a random colour, in reading order.

    Every world draws its objects through here, so the same random draws give the same scene.
    """
    cell = canvas // 3
    objects = []
    for kind, position in zip(kinds, positions, strict=True):
        col, row = _SLOT_CELLS[position]
        size = rng.randint(int(cell * 0.75), cell - 1)
        slack = cell - size
        x0 = col * cell + rng.randint(0, slack)
        y0 = row * cell + rng.randint(0, slack)
        objects.append(SceneObject(kind, rng.choice(sorted(COLOURS)), position, (x0, y0, x0 + size, y0 + size)))
    # describe objects in reading order (top to bottom, left to right), as a person would
    objects.sort(key=lambda o: (_SLOT_CELLS[o.position][1], _SLOT_CELLS[o.position][0]))
    return Scene(tuple(objects), canvas)


def draw_scene(scene: Scene):
    """Render `scene` as an RGB PIL image."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (scene.canvas, scene.canvas), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _GLYPHS[obj.kind](draw, obj.box, COLOURS[obj.colour])
    return image


# --- glyphs: each fills its box with a silhouette that differs from the others ---------------------------------------


def _ball(draw, box, colour):
    draw.ellipse(box, fill=colour)


def _apple(draw, box, colour):
    x0, y0, x1, y1 = box
    s = x1 - x0
    draw.ellipse((x0, y0 + s // 4, x1, y1), fill=colour)
    draw.line((x0 + s // 2, y0 + s // 4, x0 + s // 2 + 1, y0), fill=(110, 60, 20), width=2)
    draw.ellipse((x0 + s // 2 + 1, y0, x0 + s // 2 + s // 4, y0 + s // 6), fill=(30, 160, 50))


def _cup(draw, box, colour):
    x0, y0, x1, y1 = box
    s = x1 - x0
    draw.polygon(
        [(x0, y0 + s // 5), (x0 + 2 * s // 3, y0 + s // 5), (x0 + s // 2, y1), (x0 + s // 6, y1)], fill=colour
    )
    draw.arc((x0 + s // 2, y0 + s // 3, x1, y0 + 3 * s // 4), start=-90, end=90, fill=colour, width=2)


def _clock(draw, box, colour):
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    draw.ellipse(box, outline=colour, width=2)
    draw.line((cx, cy, cx, y0 + 3), fill=colour, width=2)
    draw.line((cx, cy, x1 - 4, cy), fill=colour, width=2)


def _kite(draw, box, colour):
    x0, y0, x1, y1 = box
    s = x1 - x0
    cx = x0 + s // 2
    draw.polygon(
        [(cx, y0), (x1 - s // 6, y0 + s // 3), (cx, y0 + 3 * s // 4), (x0 + s // 6, y0 + s // 3)], fill=colour
    )
    draw.line((cx, y0 + 3 * s // 4, cx - s // 4, y1), fill=colour, width=1)


def _stop_sign(draw, box, colour):
    x0, y0, x1, y1 = box
    s = x1 - x0
    cx = x0 + s // 2
    head = 2 * s // 3
    draw.regular_polygon((cx, y0 + head // 2, head // 2), n_sides=8, rotation=22.5, fill=colour)
    draw.line((cx, y0 + head, cx, y1), fill=(90, 90, 90), width=2)


def _umbrella(draw, box, colour):
    x0, y0, x1, y1 = box
    s = x1 - x0
    cx = x0 + s // 2
    draw.pieslice((x0, y0, x1, y0 + s), start=180, end=360, fill=colour)
    draw.line((cx, y0 + s // 2, cx, y1 - 2), fill=colour, width=2)
    draw.arc((cx - 4, y1 - 5, cx, y1), start=0, end=180, fill=colour, width=2)


def _bottle(draw, box, colour):
    x0, y0, x1, y1 = box
    s = x1 - x0
    cx = x0 + s // 2
    draw.rectangle((cx - s // 10, y0, cx + s // 10, y0 + s // 3), fill=colour)
    draw.rectangle((cx - s // 4, y0 + s // 3, cx + s // 4, y1), fill=colour)


def _book(draw, box, colour):
    x0, y0, x1, y1 = box
    s = x1 - x0
    draw.rectangle((x0, y0 + s // 5, x1, y1 - s // 5), fill=colour)
    draw.line((x0 + s // 2, y0 + s // 5, x0 + s // 2, y1 - s // 5), fill=(255, 255, 255), width=1)


_GLYPHS = {
    "ball": _ball,
    "apple": _apple,
    "cup": _cup,
    "clock": _clock,
    "kite": _kite,
    "stop sign": _stop_sign,
    "umbrella": _umbrella,
    "bottle": _bottle,
    "book": _book,
}
assert set(_GLYPHS) == set(KINDS)
