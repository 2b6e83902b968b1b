"""Zero-shot figures of a CLIP alone, before any segmentation training.

Two measures, both with the backbone's adapters bypassed (the pretrained CLIP as loaded):

* **dense** — :func:`dense_zero_shot`: every image resized to CLIP's resolution, the project's cost
  volume (:func:`cat_seg.modeling.head.cost_volume.cosine_cost_volume`, patch–text cosine averaged
  over the prompt templates) upsampled (bilinear) to the label size, argmax over the classes; scored
  by the project's :class:`SemSegEvaluator` (the same mIoU as the trained models').
* **image level** — :func:`image_zero_shot`: square crops of the dataset's images in which one class
  covers at least ``purity`` of the labelled pixels, classified by CLIP's image embedding (class
  token) against the class prompts; top-1 accuracy, balanced over the classes.
"""
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, MetadataCatalog

from cat_seg.data.label_io import read_image_rgb, read_record_label
from cat_seg.modeling.clip.encoders import encode_image_global_and_dense
from cat_seg.modeling.clip.pretraining import own_weights
from cat_seg.modeling.head.cost_volume import cosine_cost_volume
from cat_seg.utils.device import module_device

from .build import build_sem_seg_evaluator


def _clip_input(backbone, image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, R, R) CLIP-normalised on the backbone's device."""
    device = module_device(backbone)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].to(device, torch.float32)
    mean = torch.tensor(backbone.pixel_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.pixel_std, device=device).view(1, 3, 1, 1)
    size = (backbone.resolution, backbone.resolution)
    return F.interpolate((x - mean) / std, size=size, mode="bilinear", align_corners=False)


def pretrained_clip(backbone):
    """The CLIP as pretrained: ``backbone`` itself (its adapters are bypassed where it is used)
    unless training overwrote its weights (``attention``, ``full``): then a frozen copy read
    again from its weights file."""
    return backbone.pretrained_copy() if backbone.overwrites_pretrained else backbone


@torch.no_grad()
def dense_zero_shot(backbone, dataset_name: str, pretrained: bool = True) -> Dict[str, float]:
    """Dense zero-shot segmentation of a registered dataset with its own vocabulary by a CLIP
    alone (no head): the pretrained CLIP (``pretrained``, the default) or the backbone's own,
    fine-tuned weights (``pretrained=False``: what fine-tuning left of CLIP's zero-shot ability).

    Returns the dataset evaluator's ``sem_seg`` dictionary (mIoU, mIoU_gt, ..., in percent; for a
    generalized-protocol dataset also mIoU_seen, mIoU_unseen, hIoU, unseen_as_seen).
    """
    names = list(MetadataCatalog.get(dataset_name).stuff_classes)
    evaluator = build_sem_seg_evaluator(dataset_name, distributed=False)
    clip = pretrained_clip(backbone) if pretrained else backbone
    with (clip.adapters_bypassed() if pretrained else nullcontext()):
        text = clip.encode_text(names)  # (T, P, D)
        for record in DatasetCatalog.get(dataset_name):
            image = read_image_rgb(record["file_name"])
            dense, _ = clip.encode_image(_clip_input(clip, image))
            cost = cosine_cost_volume(dense, text[None]).mean(dim=1)  # (1, T, h, w)
            scores = F.interpolate(cost, size=image.shape[:2], mode="bilinear",
                                   align_corners=False)[0]
            evaluator.process([record], [{"sem_seg": scores}])
    return dict(evaluator.evaluate()["sem_seg"])


@dataclass(frozen=True)
class ImageZeroShotResult:
    """Balanced top-1 accuracy (percent), per-class accuracy and the number of crops per class."""

    top1: float
    per_class: Dict[str, float]
    counts: Dict[str, int]


def pure_crops(dataset_name: str, crop: int, stride: int, purity: float, per_class: int,
               seed: int = 0) -> Dict[int, List[np.ndarray]]:
    """class index -> up to ``per_class`` (crop, crop, 3) image crops of that class alone.

    Windows on a ``stride`` grid of every image; a window counts for class c when c covers at
    least ``purity`` of its labelled pixels (and at least half the window is labelled). A fixed
    random choice (``seed``) keeps ``per_class`` of each class's windows. Labels are read as the
    evaluation reads them (:func:`cat_seg.data.label_io.read_record_label`: a folder dataset's
    ``label_offset`` applied).
    """
    meta = MetadataCatalog.get(dataset_name)
    num_classes, ignore = len(meta.stuff_classes), int(meta.ignore_label)
    found: Dict[int, List[np.ndarray]] = {c: [] for c in range(num_classes)}
    for record in DatasetCatalog.get(dataset_name):
        image, label = read_image_rgb(record["file_name"]), read_record_label(record, ignore)
        height, width = label.shape
        for top in range(0, height - crop + 1, stride):
            for left in range(0, width - crop + 1, stride):
                window = label[top:top + crop, left:left + crop]
                valid = window[window != ignore].astype(np.int64)
                if valid.size < crop * crop / 2:
                    continue
                counts = np.bincount(valid, minlength=num_classes)
                best = int(counts.argmax())
                if best < num_classes and counts[best] >= purity * valid.size:
                    found[best].append(image[top:top + crop, left:left + crop])
    rng = np.random.default_rng(seed)
    return {c: [crops[i] for i in sorted(rng.permutation(len(crops))[:per_class])]
            for c, crops in found.items()}


@torch.no_grad()
def image_zero_shot(backbone, dataset_name: str, class_names: Sequence[str] = (),
                    crop: int = 48, stride: int = 16, purity: float = 0.9,
                    per_class: int = 100) -> ImageZeroShotResult:
    """Frozen-CLIP image classification of single-class crops of a registered dataset.

    ``class_names``: the candidate names (default: the dataset's ``stuff_classes``); a longer list
    (e.g. every class of the world) makes the task harder. The dataset's classes must be in it.
    """
    own = list(MetadataCatalog.get(dataset_name).stuff_classes)
    candidates = list(class_names) or own
    missing = [n for n in own if n not in candidates]
    if missing:
        raise ValueError(f"the candidate names lack the dataset's classes {missing}")
    crops = pure_crops(dataset_name, crop, stride, purity, per_class)
    weights = own_weights(backbone.clip.visual.transformer)
    with backbone.adapters_bypassed():
        text = backbone.encode_text(candidates).mean(dim=1)  # (T, D), templates averaged
        text = F.normalize(text, dim=-1)
        per_class, counts = {}, {}
        for c, images in crops.items():
            if not images:
                continue
            batch = torch.cat([_clip_input(backbone, im) for im in images])
            pooled, _ = encode_image_global_and_dense(backbone.clip.visual, batch, weights)
            predicted = (F.normalize(pooled, dim=-1) @ text.T).argmax(dim=1)
            truth = candidates.index(own[c])
            per_class[own[c]] = 100.0 * float((predicted == truth).float().mean())
            counts[own[c]] = len(images)
    if not per_class:
        raise ValueError(f"{dataset_name}: no crop of {crop} px is {purity:.0%} one class")
    return ImageZeroShotResult(float(np.mean(list(per_class.values()))), per_class, counts)
