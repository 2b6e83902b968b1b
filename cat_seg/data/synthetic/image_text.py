"""Image–text pairs of the synthetic world: CLIP's "web data" for the miniature pretraining.

A bank of procedural scenes (the segmentation generator, :func:`.scenes.render_scene`) is drawn over
**all** classes, seen and held-out mixed, because web captions name things a segmentation dataset
never labels. Each training sample is a random crop of a bank scene (CLIP's random-resized-crop
augmentation), flipped half of the time and resized to the pretraining resolution, with a caption
(:mod:`.captions`) naming the classes visible in the crop. Small crops often show one class, so the
model also sees "a photo of lava." for a picture of lava alone.

The bank uses its own random streams (``[SEED, BANK_STREAM, i]``), so none of its scenes is an image
of the segmentation splits (their stream codes are distinct, :data:`.storage.RENDERED_SPLITS`): the zero-shot figures on Syn-seen / Syn-unseen val are measured
on pictures the pretraining never saw.

Batches are a pure function of ``(seed, step)`` (:meth:`SceneCropStream.batch`): a resumed run
draws exactly the batches an uninterrupted run would, with no generator state to save.
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from cat_seg.data.synthetic.captions import caption_for, visible_classes
from cat_seg.data.synthetic.classes import ALL_CLASSES, SyntheticClass
from cat_seg.data.synthetic.scenes import IGNORE_LABEL, render_scene
from cat_seg.data.synthetic.storage import BANK_STREAM, SEED



@dataclass
class ImageTextBatch:
    """One batch of pairs.

    images: (B, 3, S, S) uint8 RGB crops; captions: B strings; present: (B, K) bool, the classes
    each caption names (K = number of classes), used to treat pairs naming the same classes as
    positives of each other.
    """

    images: torch.Tensor
    captions: List[str]
    present: torch.Tensor


class SceneCropStream:
    """Captioned random crops of a fixed bank of synthetic scenes.

    Args:
        num_scenes: scenes in the bank (rendered once, at construction).
        scene_size: side of the square bank scenes (pixels).
        crop_size: S, side of the returned crops.
        min_scale: smallest crop area as a fraction of the scene (largest: the whole scene).
        classes: the class list the scenes are drawn from (default: all classes).
        min_fraction: a class is named when it covers at least this fraction of the crop.
    """

    def __init__(self, num_scenes: int = 4000, scene_size: int = 192, crop_size: int = 128,
                 min_scale: float = 0.05, classes: Sequence[SyntheticClass] = ALL_CLASSES,
                 min_fraction: float = 0.04):
        if num_scenes < 1 or not 0 < min_scale <= 1 or crop_size < 1:
            raise ValueError("SceneCropStream needs num_scenes >= 1, 0 < min_scale <= 1 and "
                             f"crop_size >= 1 (got {num_scenes}, {min_scale}, {crop_size})")
        self.classes = tuple(classes)
        self.crop_size, self.min_scale, self.min_fraction = crop_size, min_scale, min_fraction
        images = np.empty((num_scenes, scene_size, scene_size, 3), np.uint8)
        labels = np.empty((num_scenes, scene_size, scene_size), np.uint8)
        for i in range(num_scenes):
            rng = np.random.default_rng([SEED, BANK_STREAM, i])
            images[i], labels[i] = render_scene(self.classes, rng, scene_size, scene_size)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def _crop_box(self, rng: np.random.Generator) -> Tuple[int, int, int, int]:
        """(top, left, height, width) of a random-resized crop: area fraction in
        [min_scale, 1], aspect ratio in [3/4, 4/3] (log-uniform), inside the scene."""
        size = self.labels.shape[1]
        area = rng.uniform(self.min_scale, 1.0) * size * size
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        height = int(round(min(size, np.sqrt(area / ratio))))
        width = int(round(min(size, np.sqrt(area * ratio))))
        top = int(rng.integers(0, size - height + 1))
        left = int(rng.integers(0, size - width + 1))
        return top, left, height, width

    def batch(self, batch_size: int, seed: int, step: int) -> ImageTextBatch:
        """Batch ``step`` of the stream seeded ``seed`` (the same on every call and machine).

        Crops whose visible classes are all below ``min_fraction`` (only borders) are redrawn.
        """
        rng = np.random.default_rng([seed, step])
        size = self.crop_size
        images = torch.empty(batch_size, 3, size, size, dtype=torch.uint8)
        present = torch.zeros(batch_size, len(self.classes), dtype=torch.bool)
        captions: List[str] = []
        for b in range(batch_size):
            while True:
                scene = int(rng.integers(len(self)))
                top, left, height, width = self._crop_box(rng)
                label = self.labels[scene, top:top + height, left:left + width]
                caption = caption_for(label, self.classes, IGNORE_LABEL, rng, self.min_fraction)
                if caption:
                    break
            crop = self.images[scene, :, top:top + height, left:left + width].float()
            crop = F.interpolate(crop[None], size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=True)[0]
            if rng.random() < 0.5:
                crop = crop.flip(-1)
            images[b] = crop.round().clamp(0, 255).to(torch.uint8)
            captions.append(caption)
            shown = visible_classes(label, len(self.classes), IGNORE_LABEL, self.min_fraction)
            present[b, torch.from_numpy(shown)] = True
        return ImageTextBatch(images, captions, present)
