"""Dataset mapper for semantic segmentation: detectron2 record -> model input.

Training (``is_train=True``), in this order:

1. shortest-edge resize (``INPUT.MIN_SIZE_TRAIN`` sampled by ``INPUT.MIN_SIZE_TRAIN_SAMPLING``,
   longest edge capped at ``INPUT.MAX_SIZE_TRAIN``); image bilinear, label nearest (pixel-centre
   sampling, any integer dtype, so 16-bit labels stay exact);
2. random crop ``INPUT.CROP.*`` retried (up to 10 times) until no single category covers
   ``INPUT.CROP.SINGLE_CATEGORY_MAX_AREA`` or more of the crop's labelled pixels (1.0: off);
   a crop larger than the image is clipped to the image;
3. SSD photometric distortion (``INPUT.COLOR_AUG_SSD``, :mod:`.photometric_distortion`);
4. horizontal flip with probability 0.5;
5. padding at the bottom/right — image with 0, label with the ignore value — first up to the
   crop size when the image is smaller than an ``"absolute"`` crop (so every training sample of
   a batch has the crop's size, the padded pixels being ignored by the loss), then up to a
   multiple of ``INPUT.SIZE_DIVISIBILITY`` (when > 0).

Test (``is_train=False``): shortest-edge resize to ``INPUT.MIN_SIZE_TEST`` (longest edge capped
at ``INPUT.MAX_SIZE_TEST``); no label is read (the evaluator reads it at the original size).

Output: the input record (every field kept) plus ``"image"`` uint8 (3, H, W) RGB tensor,
``"height"`` / ``"width"`` of the original image and, in training, ``"sem_seg"`` int64 (H, W).
Random draws use numpy's global generator, which detectron2 seeds per data-loader worker.
"""
import copy
import logging
from typing import List, Optional, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from torch.nn import functional as F

from cat_seg.data.label_io import read_image_rgb, read_record_label
from cat_seg.data.photometric_distortion import PhotometricDistortion

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- geometry

class ResizeWithExactLabels(T.ResizeTransform):
    """detectron2's resize (PIL bilinear for the image) with a label resize that is exact for
    any integer dtype: nearest neighbour sampled at pixel centres, as PIL's NEAREST does for
    8-bit images (detectron2 itself sends non-uint8 labels through float interpolation)."""

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        rows = np.minimum(((np.arange(self.new_h) + 0.5) * self.h / self.new_h).astype(np.int64),
                          self.h - 1)
        cols = np.minimum(((np.arange(self.new_w) + 0.5) * self.w / self.new_w).astype(np.int64),
                          self.w - 1)
        return segmentation[rows[:, None], cols[None, :]]


class ResizeShortestEdge(T.ResizeShortestEdge):
    """detectron2's ``ResizeShortestEdge`` producing :class:`ResizeWithExactLabels`."""

    def get_transform(self, image):
        tfm = super().get_transform(image)
        if isinstance(tfm, T.ResizeTransform):
            return ResizeWithExactLabels(tfm.h, tfm.w, tfm.new_h, tfm.new_w, tfm.interp)
        return tfm


def pad_bottom_right(image: torch.Tensor, label: Optional[torch.Tensor], height: int, width: int,
                     ignore_label: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Pad (3, H, W) ``image`` with 0 and (H, W) ``label`` with ``ignore_label`` at the bottom
    and right to at least (height, width)."""
    pad_h, pad_w = max(height - image.shape[-2], 0), max(width - image.shape[-1], 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    image = F.pad(image, (0, pad_w, 0, pad_h), value=0)
    if label is not None:
        label = F.pad(label, (0, pad_w, 0, pad_h), value=ignore_label)
    return image, label


# ---------------------------------------------------------------------------------- mapper

class SemanticDatasetMapper:
    """detectron2 record -> model input for semantic segmentation (see the module doc)."""

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[T.Augmentation],
        ignore_label: int = 255,
        num_classes: Optional[int] = None,
        crop_size: Optional[Tuple[int, int]] = None,
        size_divisibility: int = -1,
    ):
        """
        Args:
            is_train: training (label read, augmented, padded) or test mode (image only).
            augmentations: applied in order to the image (and the label in training).
            ignore_label: label value of unlabelled pixels; fills the padded label.
            num_classes: in training, labels must lie in [0, num_classes) or be the ignore
                label; None skips the check.
            crop_size: (h, w) that smaller training images are padded up to; None: no padding.
            size_divisibility: training images/labels are padded to a multiple of it (≤ 0: off).
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.ignore_label = ignore_label
        self.num_classes = num_classes
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.size_divisibility = size_divisibility
        mode = "training" if is_train else "inference"
        logger.info(f"[SemanticDatasetMapper] augmentations in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        if cfg.INPUT.FORMAT != "RGB":
            raise ValueError(
                f"INPUT.FORMAT={cfg.INPUT.FORMAT!r}: AHS-Seg feeds CLIP RGB images; set INPUT.FORMAT RGB"
            )
        if not is_train:
            return {
                "is_train": False,
                "augmentations": [ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST,
                                                     cfg.INPUT.MAX_SIZE_TEST, "choice")],
            }
        ignore_label, num_classes = _training_label_space(cfg)
        augs = [ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                   cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
        crop_size = None
        if cfg.INPUT.CROP.ENABLED:
            augs.append(T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA, ignore_label,
            ))
            if cfg.INPUT.CROP.TYPE == "absolute":
                crop_size = tuple(cfg.INPUT.CROP.SIZE)
        if cfg.INPUT.COLOR_AUG_SSD:
            augs.append(PhotometricDistortion())
        augs.append(T.RandomFlip())
        return {
            "is_train": True,
            "augmentations": augs,
            "ignore_label": ignore_label,
            "num_classes": num_classes,
            "crop_size": crop_size,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
        }

    def __call__(self, record: dict) -> dict:
        record = copy.deepcopy(record)
        image = read_image_rgb(record["file_name"])
        height, width = image.shape[:2]
        if record.get("height", height) != height or record.get("width", width) != width:
            raise ValueError(
                f"image {record['file_name']} is {height}x{width} but its dataset record says "
                f"{record['height']}x{record['width']}; the dataset index is stale — re-run the "
                "dataset's prepare script"
            )
        record["height"], record["width"] = height, width

        label = self._read_training_label(record, image) if self.is_train else None
        aug_input = T.AugInput(image, sem_seg=label)
        self.augmentations(aug_input)
        image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        if self.is_train:
            label = torch.as_tensor(np.ascontiguousarray(aug_input.sem_seg), dtype=torch.int64)
            if self.crop_size is not None:
                image, label = pad_bottom_right(image, label, *self.crop_size, self.ignore_label)
            if self.size_divisibility > 0:
                d = self.size_divisibility
                h, w = image.shape[-2:]
                image, label = pad_bottom_right(image, label, -(-h // d) * d, -(-w // d) * d,
                                                self.ignore_label)
            record["sem_seg"] = label
        record["image"] = image
        return record

    def _read_training_label(self, record: dict, image: np.ndarray) -> np.ndarray:
        if "sem_seg_file_name" not in record:
            raise KeyError(
                f"training record of {record['file_name']} has no 'sem_seg_file_name': "
                "semantic-segmentation training needs a label map per image"
            )
        path = record["sem_seg_file_name"]
        label = read_record_label(record, self.ignore_label)  # a folder dataset's offset applied
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"label {path} is {label.shape[0]}x{label.shape[1]} but image "
                f"{record['file_name']} is {image.shape[0]}x{image.shape[1]}; they must match"
            )
        if self.num_classes is not None:
            bad = (label != self.ignore_label) & ((label < 0) | (label >= self.num_classes))
            if bad.any():
                values = np.unique(label[bad]).tolist()
                raise ValueError(
                    f"label file {path} holds values {values[:20]} outside the training classes "
                    f"[0, {self.num_classes}) (ignore label {self.ignore_label}); the labels do "
                    "not match the class list — re-run the dataset's prepare script"
                )
        return label


def _training_label_space(cfg) -> Tuple[int, int]:
    """(ignore label, number of classes) shared by all of ``cfg.DATASETS.TRAIN``."""
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("DATASETS.TRAIN is empty: name the dataset(s) to train on")
    ignore, classes = set(), set()
    for name in names:
        meta = MetadataCatalog.get(name)
        if not hasattr(meta, "stuff_classes") or not hasattr(meta, "ignore_label"):
            raise ValueError(
                f"training dataset {name!r} has no stuff_classes/ignore_label metadata: "
                "is it registered (import cat_seg) and spelled right?"
            )
        ignore.add(int(meta.ignore_label))
        classes.add(tuple(meta.stuff_classes))
    if len(classes) != 1:
        raise ValueError(f"the training datasets {names} have different class lists; "
                         "train on datasets that share one vocabulary")
    expected = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
    if ignore != {expected}:
        raise ValueError(
            f"the training datasets {names} use ignore label(s) {sorted(ignore)} but "
            f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE is {expected}; make them agree"
        )
    return expected, len(classes.pop())
