"""Captions of synthetic scenes: the alt-text a web page would give the picture.

CLIP learnt its words from captions that name what a picture shows, never from pixel labels. The
synthetic world's pretraining data (:mod:`.image_text`) is built the same way: every crop of a scene
gets a caption naming the classes that are visible in it, in random order, with counts for objects
("a photo of lava, two kites and ice."), under one of several templates. Region classes (lava,
grass, ...) are mass nouns; object classes (kite, car, ...) are counted by their connected
components in the crop.

The segmentation prompt ``"A photo of a {} in the scene"`` is one of the templates, so the text
encoder has seen the sentence shape the segmentation model will ask it about.
"""
from typing import List, Sequence

import numpy as np
from scipy import ndimage

from cat_seg.data.synthetic.classes import SyntheticClass

# Caption templates; ``{}`` receives the list of things ("lava, a kite and ice").
CAPTION_TEMPLATES = (
    "a photo of {}.",
    "a picture of {}.",
    "an image showing {}.",
    "a scene with {}.",
    "a synthetic scene of {}.",
    "there is {} in this picture.",
    "{}.",
    "A photo of {} in the scene",
)
NUMBER_WORDS = ("no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def article(word: str) -> str:
    """``"a"`` or ``"an"`` by the first letter (enough for the synthetic world's names)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def plural(word: str) -> str:
    """English plural of a (possibly two-word) noun: the last word takes the ending."""
    if word.endswith(("s", "x", "sh", "ch")):
        return word + "es"
    return word + "s"


def name_phrase(cls: SyntheticClass, count: int) -> str:
    """How a caption names ``cls`` seen ``count`` times: regions bare, objects counted."""
    if cls.role == "region":
        return cls.name
    if count <= 1:
        return f"{article(cls.name)} {cls.name}"
    word = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else "many"
    return f"{word} {plural(cls.name)}"


def join_phrases(phrases: Sequence[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def visible_classes(label: np.ndarray, num_classes: int, ignore_label: int,
                    min_fraction: float) -> np.ndarray:
    """Indices of the classes covering at least ``min_fraction`` of the labelled pixels of
    ``label`` (H, W); empty when nothing is labelled."""
    valid = label[label != ignore_label].astype(np.int64)
    if valid.size == 0:
        return np.zeros(0, dtype=np.int64)
    counts = np.bincount(valid, minlength=num_classes)[:num_classes]
    return np.flatnonzero(counts >= min_fraction * valid.size)


def object_count(label: np.ndarray, class_index: int) -> int:
    """Connected components (4-neighbourhood) of ``class_index`` in ``label``: the instances a
    viewer counts (two overlapping objects of one class merge, as they look)."""
    return int(ndimage.label(label == class_index)[1])


def caption_for(label: np.ndarray, classes: Sequence[SyntheticClass], ignore_label: int,
                rng: np.random.Generator, min_fraction: float = 0.04) -> str:
    """A caption naming what ``label`` (H, W, indices into ``classes``) shows; "" if nothing.

    Classes are named in random order under a random template of ``CAPTION_TEMPLATES``.
    """
    present = visible_classes(label, len(classes), ignore_label, min_fraction)
    if present.size == 0:
        return ""
    phrases: List[str] = [
        name_phrase(classes[i], object_count(label, int(i)) if classes[i].role == "object" else 1)
        for i in rng.permutation(present)
    ]
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    return template.format(join_phrases(phrases))
