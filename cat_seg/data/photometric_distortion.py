"""SSD's photometric distortion (brightness, contrast, saturation, hue) of training images.

:class:`PhotometricDistortion` draws the distortions (numpy's global generator, which detectron2
seeds per data-loader worker) and returns a :class:`PhotometricDistortionTransform` that applies
them; :class:`cat_seg.data.dataset_mapper.SemanticDatasetMapper` uses it when
``INPUT.COLOR_AUG_SSD`` is on. Labels are untouched.
"""
from typing import Optional

import numpy as np
from detectron2.data import transforms as T


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) RGB in [0, 1] -> (…, 3) HSV with hue in degrees [0, 360), s and v in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    chroma = value - rgb.min(axis=-1)
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(value == r, ((g - b) / safe) % 6.0,
                   np.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = np.where(chroma > 0, hue * 60.0, 0.0)
    saturation = np.where(value > 0, chroma / np.where(value > 0, value, 1.0), 0.0)
    return np.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`."""
    hue, saturation, value = hsv[..., 0] % 360.0, hsv[..., 1], hsv[..., 2]
    chroma = value * saturation
    sector = hue / 60.0
    second = chroma * (1.0 - np.abs(sector % 2.0 - 1.0))
    zero = np.zeros_like(chroma)
    index = np.minimum(sector.astype(np.int64), 5)
    # (r, g, b) before adding the offset v - c, for each 60° sector of the hue circle.
    r = np.choose(index, [chroma, second, zero, zero, second, chroma])
    g = np.choose(index, [second, chroma, chroma, second, zero, zero])
    b = np.choose(index, [zero, zero, second, chroma, chroma, second])
    return np.stack([r, g, b], axis=-1) + (value - chroma)[..., None]


class PhotometricDistortionTransform(T.Transform):
    """Apply drawn SSD photometric distortions to a uint8 RGB image (labels untouched).

    brightness: intensity offset added to every channel, or None.
    contrast: intensity factor, or None; applied before saturation/hue when ``contrast_first``,
        after them otherwise.
    saturation: factor on HSV saturation (clipped to 1), or None.
    hue: hue rotation in degrees, or None.
    Each step clips to [0, 255]; intermediate values stay float, rounding happens once.
    """

    def __init__(self, brightness: Optional[float], contrast: Optional[float],
                 contrast_first: bool, saturation: Optional[float], hue: Optional[float]):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        x = img.astype(np.float32)
        if self.brightness is not None:
            x = np.clip(x + self.brightness, 0, 255)
        if self.contrast is not None and self.contrast_first:
            x = np.clip(x * self.contrast, 0, 255)
        if self.saturation is not None or self.hue is not None:
            hsv = rgb_to_hsv(x / 255.0)
            if self.saturation is not None:
                hsv[..., 1] = np.clip(hsv[..., 1] * self.saturation, 0, 1)
            if self.hue is not None:
                hsv[..., 0] = (hsv[..., 0] + self.hue) % 360.0
            x = np.clip(hsv_to_rgb(hsv) * 255.0, 0, 255)
        if self.contrast is not None and not self.contrast_first:
            x = np.clip(x * self.contrast, 0, 255)
        return np.round(x).astype(np.uint8)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords


class PhotometricDistortion(T.Augmentation):
    """SSD's photometric distortion (Liu et al. 2016), as CAT-Seg / Mask2Former train with.

    Each of the four distortions is applied with probability 0.5:
    brightness ``+δ, δ ~ U(−32, 32)``; contrast ``×α, α ~ U(0.5, 1.5)`` (before or after the HSV
    steps, 50/50); saturation ``×α, α ~ U(0.5, 1.5)``; hue ``+δ°, δ ~ U(−36, 36)`` (OpenCV's
    ±18 units of 2°).
    """

    def __init__(self, brightness_delta: float = 32.0, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta_degrees: float = 36.0):
        super().__init__()
        self._init(locals())

    def get_transform(self, image) -> PhotometricDistortionTransform:
        rand = np.random
        brightness = rand.uniform(-self.brightness_delta, self.brightness_delta) \
            if rand.rand() < 0.5 else None
        contrast_first = bool(rand.randint(2))
        contrast = rand.uniform(*self.contrast_range) if rand.rand() < 0.5 else None
        saturation = rand.uniform(*self.saturation_range) if rand.rand() < 0.5 else None
        hue = rand.uniform(-self.hue_delta_degrees, self.hue_delta_degrees) \
            if rand.rand() < 0.5 else None
        return PhotometricDistortionTransform(brightness, contrast, contrast_first, saturation, hue)
