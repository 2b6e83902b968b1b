"""Miniature *prepared* benchmarks in CAT-Seg's layout, for tests that load registered datasets.

``write_prepared_benchmarks(root)`` writes, for every split of
``cat_seg.data.benchmarks.BENCHMARK_SPLITS``, a few random JPEG images and label maps with the
split's real class count, label format (8-bit PNG or 16-bit TIFF) and ignore label, exactly
where the prepare scripts put them. Splits that share an image folder (PAS-20 / PAS-20b,
PC-59 / PC-459) share their images, and those folders also get one unlabelled image, as the
real VOC ``JPEGImages`` folders hold more images than a split.
"""
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
from PIL import Image

from cat_seg.data.benchmarks import BENCHMARK_SPLITS, load_class_names

# Fraction of label pixels set to the ignore label.
_IGNORE_FRACTION = 0.1


def write_label(path: Path, label: np.ndarray) -> None:
    """PNG (uint8) or TIFF (uint16) by the file extension, as the prepare scripts write them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if path.suffix == ".tif" else np.uint8
    Image.fromarray(label.astype(dtype)).save(path)


def write_prepared_benchmarks(
    root,
    num_images: int = 2,
    size=(24, 32),
    seed: int = 0,
    dataset_names: Optional[Iterable[str]] = None,
) -> Dict[str, List[str]]:
    """Write miniature copies of the splits (all, or ``dataset_names``) under ``root``.

    Returns {dataset name: image stems, sorted}. Images are (H, W) = ``size`` RGB JPEGs; labels
    hold random classes ``0..C-1`` and ~10 % ignore pixels (every class count is the real one,
    e.g. 847 for A-847, so values above 255 occur in the TIFF labels).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    wanted = None if dataset_names is None else set(dataset_names)
    stems_by_dataset = {}
    for split in BENCHMARK_SPLITS:
        if wanted is not None and split.dataset_name not in wanted:
            continue
        image_dir, label_dir = root / split.image_dir, root / split.label_dir
        stems = [f"img_{i:04d}" for i in range(num_images)]
        extra = [] if split.every_image_labelled else [f"img_{num_images:04d}"]
        for stem in stems + extra:
            image_path = image_dir / f"{stem}.{split.image_ext}"
            if not image_path.exists():
                image_dir.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(image_path, quality=95)
        num_classes = len(load_class_names(split.class_names))
        for stem in stems:
            label = rng.integers(0, num_classes, size=size)
            label[rng.random(size) < _IGNORE_FRACTION] = split.ignore_label
            write_label(label_dir / f"{stem}.{split.label_ext}", label)
        stems_by_dataset[split.dataset_name] = stems
    return stems_by_dataset
