#!/usr/bin/env python
"""COCO-Stuff 164k -> 171-class labels (COCO-171, the training set and its val split).

Input (official downloads, under the dataset root):
    coco-stuff/images/{train2017,val2017}/*.jpg           COCO 2017 train/val images
    coco-stuff/annotations/{train2017,val2017}/*.png      stuffthingmaps_trainval2017.zip
Output:
    coco-stuff/annotations_detectron2/{train2017,val2017}/*.png

The stuffthingmaps PNGs store ``COCO category id - 1`` (0..181) and 255 for unlabelled pixels.
182 ids minus 11 unused ones (ids removed from COCO before release) leave 171 classes, numbered
0..170 in id order, i.e. the order of ``cat_seg/data/class_names/coco.json`` (80 things, then
91 stuff classes). Unused ids and 255 become the ignore label 255.
"""
import sys
from functools import partial

import numpy as np

from preparation import (
    check_pair_sizes, checked_root, entry_point,
    Summary, Task, build_parser, check_values, count_files, expected_counts, read_index_map,
    run_tasks, write_png_label,
)

SPLITS = ("train2017", "val2017")
OFFICIAL_COUNTS = {"train2017": 118287, "val2017": 5000}
IGNORE = 255
# stuffthingmaps values (category id - 1) of the 11 COCO ids that have no annotation.
UNUSED_VALUES = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
NUM_VALUES = 182  # stuffthingmaps values 0..181
DOWNLOAD_IMAGES = (
    "COCO 2017 images: http://images.cocodataset.org/zips/{split}.zip, unzipped into "
    "coco-stuff/images/"
)
DOWNLOAD_LABELS = (
    "COCO-Stuff maps: http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
    "stuffthingmaps_trainval2017.zip, unzipped into coco-stuff/annotations/"
)


def label_lut() -> np.ndarray:
    """uint8 look-up table: stuffthingmaps value -> class index 0..170, or 255."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    used = [v for v in range(NUM_VALUES) if v not in UNUSED_VALUES]
    lut[used] = np.arange(len(used), dtype=np.uint8)
    return lut


VALID_VALUES = np.array(list(range(NUM_VALUES)) + [IGNORE])


def convert(task: Task, lut: np.ndarray) -> None:
    label = read_index_map(task.sources[0])
    check_values(label, VALID_VALUES, task.sources[0])
    write_png_label(lut[label], task.outputs[0])


@entry_point("coco-stuff")
def main(argv=None) -> int:
    parser = build_parser(__doc__, OFFICIAL_COUNTS)
    parser.add_argument(
        "--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
        help="splits to prepare (default: both; val2017 alone suffices for evaluation)",
    )
    args = parser.parse_args(argv)
    expected = expected_counts(args, OFFICIAL_COUNTS)
    root = checked_root(args)
    base = root / "coco-stuff"
    summary = Summary("prepare_coco_stuff.py", root)
    lut = label_lut()
    for split in args.splits:
        source_dir = base / "annotations" / split
        image_dir = base / "images" / split
        output_dir = base / "annotations_detectron2" / split
        skip = "" if len(args.splits) == 1 else f" (or leave {split} out of --splits)"
        if not summary.require([source_dir], DOWNLOAD_LABELS + skip):
            continue
        summary.require([image_dir], DOWNLOAD_IMAGES.format(split=split))
        tasks = [
            Task(p.stem, (p,), (output_dir / p.name,))
            for p in sorted(source_dir.glob("*.png")) if not p.name.startswith(".")
        ]
        stats = run_tasks(tasks, partial(convert, lut=lut), args.workers, args.overwrite, split)
        summary.run(f"{split} labels", stats)
        summary.check_count(
            f"{split} labels", count_files(output_dir, ".png"), expected[split], output_dir, split
        )
        summary.check_count(
            f"{split} images", count_files(image_dir, ".jpg"), expected[split], image_dir, split
        )
        check_pair_sizes(summary, split, [(image_dir / f"{t.name}.jpg", t.outputs[0])
                                          for t in tasks], args.workers)
    return summary.finish()


if __name__ == "__main__":
    sys.exit(main())
