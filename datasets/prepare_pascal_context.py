#!/usr/bin/env python
"""PASCAL-Context -> PC-59 (8-bit PNG) and PC-459 (16-bit TIFF) validation labels, in one pass.

Input (official downloads, under the dataset root):
    VOCdevkit/VOC2010/JPEGImages/*.jpg                VOCtrainval_03-May-2010.tar
    VOCdevkit/VOC2010/ImageSets/Main/val.txt          (the 5105 PASCAL-Context val images)
    VOCdevkit/VOC2010/trainval/<id>.mat               PASCAL-Context trainval.tar.gz
Output:
    VOCdevkit/VOC2010/annotations_detectron2/pc59_val/<id>.png    0..58, 255 = ignore
    VOCdevkit/VOC2010/annotations_detectron2/pc459_val/<id>.tif   0..458, 459 = ignore

Each ``.mat`` holds ``LabelMap`` (uint16): 1..459 index the 459 PASCAL-Context classes (the
order of ``class_names/pc459.json``), 0 marks unlabelled pixels.
PC-459: class k becomes k - 1; unlabelled becomes 459, the ignore label CAT-Seg registers.
PC-59:  the 59 frequent classes (``PC59_CLASS_IDS``, ascending, the order of
        ``class_names/pc59.json``) become 0..58, every other pixel the ignore label 255.

``--split-file`` picks another image list: CAT-Seg's ``pascalcontext_val.txt`` holds 5104 of
the 5105 images (the Detail-API val split); use it with ``--expect val=5104``.
"""
import sys
from pathlib import Path

import numpy as np
import scipy.io

from preparation import (
    check_pair_sizes, checked_file, checked_root, entry_point,
    Summary, Task, build_parser, check_values, count_files, expected_counts, read_id_list,
    run_tasks, write_png_label, write_tiff_label,
)

OFFICIAL_COUNTS = {"val": 5105}
NUM_CLASSES_FULL = 459
PC459_IGNORE = 459
PC59_IGNORE = 255
# PASCAL-Context ids (1..459) of the 59 frequent classes, ascending = PC-59 label order.
PC59_CLASS_IDS = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98,
    104, 105, 113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295,
    296, 308, 324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440,
    445, 454, 458,
)
DOWNLOAD_VOC = (
    "VOCtrainval_03-May-2010.tar: http://host.robots.ox.ac.uk/pascal/VOC/voc2010/"
    "VOCtrainval_03-May-2010.tar, unpacked into the dataset root"
)
DOWNLOAD_CONTEXT = (
    "PASCAL-Context trainval.tar.gz: https://www.cs.stanford.edu/~roozbeh/pascal-context/"
    "trainval.tar.gz, unpacked into VOCdevkit/VOC2010/ (giving VOCdevkit/VOC2010/trainval/)"
)

PC459_LUT = np.empty(NUM_CLASSES_FULL + 1, dtype=np.uint16)
PC459_LUT[0] = PC459_IGNORE
PC459_LUT[1:] = np.arange(NUM_CLASSES_FULL, dtype=np.uint16)
PC59_LUT = np.full(NUM_CLASSES_FULL + 1, PC59_IGNORE, dtype=np.uint8)
PC59_LUT[list(PC59_CLASS_IDS)] = np.arange(len(PC59_CLASS_IDS), dtype=np.uint8)
VALID_VALUES = np.arange(NUM_CLASSES_FULL + 1)


def read_label_map(path: Path) -> np.ndarray:
    """The ``LabelMap`` array (H, W) of a PASCAL-Context ``.mat`` file."""
    mat = scipy.io.loadmat(str(path))
    if "LabelMap" not in mat:
        raise ValueError(f"{path} has no 'LabelMap' variable; is it a PASCAL-Context map?")
    label = np.asarray(mat["LabelMap"])
    if label.ndim != 2 or label.dtype.kind not in "ui":
        raise ValueError(f"{path}: LabelMap is {label.dtype} {label.shape}, expected 2-D integers")
    return label


def convert(task: Task) -> dict:
    label = read_label_map(task.sources[0])
    check_values(label, VALID_VALUES, task.sources[0])
    write_png_label(PC59_LUT[label], task.outputs[0])
    write_tiff_label(PC459_LUT[label], task.outputs[1])
    return {"unlabelled pixels": int(np.count_nonzero(label == 0))}


@entry_point("pascal-context")
def main(argv=None) -> int:
    parser = build_parser(__doc__, OFFICIAL_COUNTS)
    parser.add_argument(
        "--split-file", default=None,
        help="image ids to convert, one per line "
        "(default: VOCdevkit/VOC2010/ImageSets/Main/val.txt)",
    )
    args = parser.parse_args(argv)
    expected = expected_counts(args, OFFICIAL_COUNTS)
    root = checked_root(args)
    voc = root / "VOCdevkit" / "VOC2010"
    official_split = voc / "ImageSets" / "Main" / "val.txt"
    split_file = checked_file(args.split_file, "--split-file", "give the file of image ids, one "
                              "per line") if args.split_file else official_split
    mat_dir = voc / "trainval"
    pc59_dir = voc / "annotations_detectron2" / "pc59_val"
    pc459_dir = voc / "annotations_detectron2" / "pc459_val"
    summary = Summary("prepare_pascal_context.py", root)
    have_voc = summary.require([split_file, voc / "JPEGImages"], DOWNLOAD_VOC)
    if summary.require([mat_dir], DOWNLOAD_CONTEXT) and have_voc:
        ids = read_id_list(split_file)
        summary.check_count("val images listed", len(ids), expected["val"], split_file, "val")
        tasks = [
            Task(i, (mat_dir / f"{i}.mat",), (pc59_dir / f"{i}.png", pc459_dir / f"{i}.tif"))
            for i in ids
        ]
        stats = run_tasks(tasks, convert, args.workers, args.overwrite, "val")
        summary.run("val PC-59 + PC-459 labels", stats)
        summary.check_count("PC-59 labels", count_files(pc59_dir, ".png"), expected["val"],
                            pc59_dir, "val")
        summary.check_count("PC-459 labels", count_files(pc459_dir, ".tif"), expected["val"],
                            pc459_dir, "val")
        no_image = [i for i in ids if not (voc / "JPEGImages" / f"{i}.jpg").is_file()]
        if no_image:
            summary.problem(
                f"{len(no_image)} listed images are missing from {voc / 'JPEGImages'} "
                f"(e.g. {no_image[0]}.jpg): get {DOWNLOAD_VOC}"
            )
        else:
            summary.note(f"images: all {len(ids)} listed images are in {voc / 'JPEGImages'}")
        check_pair_sizes(summary, "val", [(voc / "JPEGImages" / f"{i}.jpg", out / f"{i}.{ext}")
                                          for i in ids
                                          for out, ext in ((pc59_dir, "png"), (pc459_dir, "tif"))],
                         args.workers)
    return summary.finish()


if __name__ == "__main__":
    sys.exit(main())
