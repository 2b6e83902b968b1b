"""The named classes of the built-in synthetic dataset and their appearance statistics.

Each class has a mean colour, a texture (see :mod:`.textures`) with its period and contrast, and
a role: a *region* fills a band of the scene (sky, grass, ...), an *object* is a shape drawn on
top (car, sun, ...) and always has the same shape. Colour, texture and shape together make the
classes learnable by a small model from a few hundred images.

The *seen* classes are the training vocabulary; the *unseen* classes never appear in training
and form the held-out validation split with its own vocabulary.

The *selection* classes are three seen classes that the selection regime
(``synthetic_selection_train``) holds out of segmentation training, as the place to choose
anything that concerns transfer (a loss weight, a schedule, a world parameter) without ever
looking at the six test held-out classes. They were picked by role before any held-out figure
existed: two regions and one object, as the test split has four regions and two objects, each
with a training class of similar colour (snow / sky and window, wood / brick wall, flower /
sun), so that they can be confused with a seen class as the held-out ones can.
"""
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class SyntheticClass:
    """Appearance of one class.

    name: the class name (a real word, used in prompts).
    role: "region" or "object".
    color: mean RGB colour (0–255).
    texture: texture name, a key of ``textures.TEXTURES``.
    period: spatial period of the texture in pixels.
    contrast: amplitude of the texture in intensity units (added to all three channels).
    shape: for objects, the shape drawn ("circle", "ellipse", "rectangle", "triangle",
        "diamond"); empty for regions.
    """

    name: str
    role: str
    color: Tuple[int, int, int]
    texture: str
    period: float
    contrast: float
    shape: str = ""


SEEN_CLASSES = (
    SyntheticClass("sky", "region", (135, 185, 235), "gradient", 1.0, 30.0),
    SyntheticClass("grass", "region", (70, 150, 55), "streaks", 6.0, 35.0),
    SyntheticClass("water", "region", (35, 95, 170), "waves", 14.0, 30.0),
    SyntheticClass("sand", "region", (215, 195, 140), "grain", 1.0, 18.0),
    SyntheticClass("snow", "region", (238, 240, 245), "blobs", 24.0, 8.0),
    SyntheticClass("road", "region", (85, 85, 90), "grain", 1.0, 25.0),
    SyntheticClass("brick wall", "region", (165, 75, 55), "bricks", 12.0, 45.0),
    SyntheticClass("mountain", "region", (125, 115, 105), "blobs", 10.0, 40.0),
    SyntheticClass("wood", "region", (140, 95, 55), "rings", 9.0, 30.0),
    SyntheticClass("tree", "region", (35, 95, 45), "blobs", 5.0, 35.0),
    SyntheticClass("car", "object", (200, 35, 35), "blobs", 40.0, 20.0, "rectangle"),
    SyntheticClass("sun", "object", (250, 215, 50), "blobs", 40.0, 10.0, "circle"),
    SyntheticClass("boat", "object", (245, 150, 40), "stripes", 10.0, 30.0, "triangle"),
    SyntheticClass("flower", "object", (215, 70, 180), "dots", 10.0, 45.0, "circle"),
    SyntheticClass("window", "object", (175, 215, 235), "grid", 14.0, 60.0, "rectangle"),
    SyntheticClass("fence", "object", (205, 200, 185), "stripes", 6.0, 60.0, "rectangle"),
)

UNSEEN_CLASSES = (
    SyntheticClass("lava", "region", (225, 85, 25), "blobs", 8.0, 45.0),
    SyntheticClass("ice", "region", (205, 235, 245), "diagonal", 16.0, 20.0),
    SyntheticClass("gravel", "region", (150, 140, 130), "grain", 1.0, 45.0),
    SyntheticClass("carpet", "region", (125, 40, 95), "checker", 8.0, 30.0),
    SyntheticClass("balloon", "object", (70, 200, 215), "blobs", 30.0, 20.0, "ellipse"),
    SyntheticClass("kite", "object", (110, 60, 200), "diagonal", 8.0, 40.0, "diamond"),
)

# Seen classes held out of segmentation training in the selection regime (see module docstring).
SELECTION_CLASS_NAMES = ("snow", "wood", "flower")
SELECTION_CLASSES = tuple(c for c in SEEN_CLASSES if c.name in SELECTION_CLASS_NAMES)
# The seen classes that the selection regime trains on (13).
SELECTION_TRAINING_CLASSES = tuple(c for c in SEEN_CLASSES if c.name not in SELECTION_CLASS_NAMES)
# Every class of the world, seen first: the generalized benchmark's 22-name vocabulary.
ALL_CLASSES = SEEN_CLASSES + UNSEEN_CLASSES
