"""Procedural scenes: bands of region classes with wavy borders, object shapes on top.

``render_scene`` draws one image and its label map from a random generator, so a scene is a pure
function of the generator's seed. The label map holds class indices into the given class list;
a one-pixel line along every border between two classes carries the ignore label (as the void
borders of PASCAL VOC), so the ignore path is exercised by training and evaluation alike.
"""
from typing import Sequence, Tuple

import numpy as np

from cat_seg.data.synthetic.classes import SyntheticClass
from cat_seg.data.synthetic.textures import TEXTURES

IGNORE_LABEL = 255


def _region_layout(height, width, region_ids, rng) -> np.ndarray:
    """2–3 bands of distinct region classes separated by sine-shaped borders.

    Bands are stacked top to bottom, or (one scene in four) left to right.
    """
    count = int(rng.integers(2, 4))
    chosen = rng.choice(region_ids, size=min(count, len(region_ids)), replace=False)
    side_by_side = rng.random() < 0.25
    along, across = (height, width) if side_by_side else (width, height)
    t = np.arange(along, dtype=np.float32)[None, :]
    a = np.arange(across, dtype=np.float32)[:, None]
    band = np.zeros((across, along), dtype=np.int64)
    # Borders at increasing depths (each band keeps at least ~15% of the image).
    fractions = np.sort(rng.uniform(0.15, 0.85, size=len(chosen) - 1))
    for fraction in fractions:
        amplitude = rng.uniform(0.02, 0.08) * across
        period = rng.uniform(0.5, 2.0) * along
        border = fraction * across + amplitude * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        band += (a >= border).astype(np.int64)
    label = np.asarray(chosen)[band]
    return label.T if side_by_side else label


def _shape_mask(shape, height, width, rng) -> np.ndarray:
    """A filled shape of 30–55% of the shorter side at a random position (may leave the image)."""
    size = rng.uniform(0.3, 0.55) * min(height, width)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    y = np.arange(height, dtype=np.float32)[:, None] - cy
    x = np.arange(width, dtype=np.float32)[None, :] - cx
    r = size / 2
    if shape == "circle":
        return y * y + x * x <= r * r
    if shape == "ellipse":  # taller than wide
        ry, rx = r, r * rng.uniform(0.6, 0.8)
        return (y / ry) ** 2 + (x / rx) ** 2 <= 1
    if shape == "rectangle":
        ry, rx = r * rng.uniform(0.5, 1.0), r * rng.uniform(0.8, 1.6)
        return (np.abs(y) <= ry) & (np.abs(x) <= rx)
    if shape == "triangle":  # apex up, base down
        ry, rx = r * rng.uniform(0.6, 1.0), r * rng.uniform(0.8, 1.4)
        depth = (y + ry) / (2 * ry)  # 0 at the apex, 1 at the base
        return (depth >= 0) & (depth <= 1) & (np.abs(x) <= rx * depth)
    if shape == "diamond":
        ry, rx = r, r * rng.uniform(0.5, 0.8)
        return np.abs(y) / ry + np.abs(x) / rx <= 1
    raise ValueError(f"unknown shape {shape!r}")


def render_scene(
    classes: Sequence[SyntheticClass],
    rng: np.random.Generator,
    min_size: int,
    max_size: int,
) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one scene of ``classes``.

    Returns ``image`` uint8 (H, W, 3) and ``label`` uint8 (H, W) of indices into ``classes``
    (255 on class borders); H and W are drawn independently from [min_size, max_size].
    """
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    region_ids = [i for i, c in enumerate(classes) if c.role == "region"]
    object_ids = [i for i, c in enumerate(classes) if c.role == "object"]
    label = _region_layout(height, width, region_ids, rng)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.choice(object_ids))
        label[_shape_mask(classes[cls].shape, height, width, rng)] = cls

    image = np.zeros((height, width, 3), dtype=np.float32)
    for cls in np.unique(label):
        spec = classes[int(cls)]
        # Per-image appearance jitter: brightness ±10%, a small colour cast.
        color = np.asarray(spec.color, np.float32) * rng.uniform(0.9, 1.1) + rng.normal(0, 6, 3)
        mask = label == cls
        # The texture is drawn over the class's bounding box only (a scene has ~5 classes).
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        field = TEXTURES[spec.texture](rows[-1] - rows[0] + 1,
                                       cols[-1] - cols[0] + 1, spec.period, rng)
        inside = mask[box]
        image[box][inside] = color[None, :] + spec.contrast * field[inside][:, None]
    image += 3.0 * rng.standard_normal(image.shape, dtype=np.float32)  # sensor noise

    border = np.zeros_like(label, dtype=bool)
    border[:, :-1] |= label[:, :-1] != label[:, 1:]
    border[:-1, :] |= label[:-1, :] != label[1:, :]
    label = label.astype(np.uint8)
    label[border] = IGNORE_LABEL
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), label


def render_mixed_scene(
    classes: Sequence[SyntheticClass],
    unseen: np.ndarray,
    rng: np.random.Generator,
    min_size: int,
    max_size: int,
    max_tries: int = 100,
) -> Tuple[np.ndarray, np.ndarray]:
    """A scene of ``classes`` that shows at least one seen and one held-out class.

    ``unseen`` is a (len(classes),) bool mask of the held-out classes. Scenes are drawn with
    :func:`render_scene` from the same generator until one has labelled pixels of both kinds
    (a class hidden under objects or reduced to borders does not count), so the result is still
    a pure function of the generator's seed. Raises ``RuntimeError`` after ``max_tries`` draws.
    """
    unseen = np.asarray(unseen, dtype=bool)
    if unseen.shape != (len(classes),) or unseen.all() or not unseen.any():
        raise ValueError("render_mixed_scene needs a mask over the classes with both seen and "
                         f"held-out classes, got {unseen.tolist()}")
    for _ in range(max_tries):
        image, label = render_scene(classes, rng, min_size, max_size)
        present = np.unique(label[label != IGNORE_LABEL])
        if unseen[present].any() and not unseen[present].all():
            return image, label
    raise RuntimeError(f"no scene with both seen and held-out classes in {max_tries} draws")
