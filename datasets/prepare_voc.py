#!/usr/bin/env python
"""PASCAL VOC 2012 -> PAS-20 and PAS-20b validation labels, in one pass.

Input (official downloads, under the dataset root):
    VOCdevkit/VOC2012/JPEGImages/*.jpg                       VOCtrainval_11-May-2012.tar
    VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt         (the 1449 val images)
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png          SegmentationClassAug.zip, or else
    VOCdevkit/VOC2012/SegmentationClass/<id>.png             (in the tar; same val maps)
Output:
    VOCdevkit/VOC2012/annotations_detectron2/val/<id>.png      PAS-20:  0..19, 255 = ignore
    VOCdevkit/VOC2012/annotations_detectron2_bg/val/<id>.png   PAS-20b: 0..19, 20 = background

Source maps hold 0 = background, 1..20 = the VOC classes (order of ``class_names/voc20.json``),
255 = object boundaries / difficult. PAS-20 ignores background (255), PAS-20b keeps it as
class 20. As in CAT-Seg, a map with no labelled pixel left is not written (it would add nothing
to the confusion matrix); the summary counts such maps.
"""
import sys

import numpy as np

from preparation import (
    check_pair_sizes, checked_root, entry_point,
    Summary, Task, build_parser, check_values, count_files, expected_counts, read_id_list,
    read_index_map, run_tasks, write_png_label,
)

OFFICIAL_COUNTS = {"val": 1449}
NUM_CLASSES = 20
IGNORE = 255
BACKGROUND = NUM_CLASSES  # PAS-20b's class index of VOC's background
LABEL_FOLDERS = ("SegmentationClassAug", "SegmentationClass")
DOWNLOAD = (
    "VOCtrainval_11-May-2012.tar: http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
    "VOCtrainval_11-May-2012.tar, unpacked into the dataset root"
)

VOC20_LUT = np.full(256, IGNORE, dtype=np.uint8)
VOC20_LUT[1: NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)
VOC20B_LUT = VOC20_LUT.copy()
VOC20B_LUT[0] = BACKGROUND
VALID_VALUES = np.array(list(range(NUM_CLASSES + 1)) + [IGNORE])


def convert(task: Task) -> dict:
    label = read_index_map(task.sources[0])
    check_values(label, VALID_VALUES, task.sources[0])
    empty = 0
    for lut, output in zip((VOC20_LUT, VOC20B_LUT), task.outputs):
        converted = lut[label]
        if np.all(converted == IGNORE):
            empty += 1
            continue
        write_png_label(converted, output)
    return {"maps without a labelled pixel (not written)": empty}


@entry_point("voc")
def main(argv=None) -> int:
    args = build_parser(__doc__, OFFICIAL_COUNTS).parse_args(argv)
    expected = expected_counts(args, OFFICIAL_COUNTS)
    root = checked_root(args)
    voc = root / "VOCdevkit" / "VOC2012"
    split_file = voc / "ImageSets" / "Segmentation" / "val.txt"
    out20 = voc / "annotations_detectron2" / "val"
    out20b = voc / "annotations_detectron2_bg" / "val"
    summary = Summary("prepare_voc.py", root)
    label_dir = next((voc / d for d in LABEL_FOLDERS if (voc / d).is_dir()), None)
    if label_dir is None:
        summary.problem(
            f"missing {voc / LABEL_FOLDERS[0]} and {voc / LABEL_FOLDERS[1]}: get {DOWNLOAD}"
        )
    if summary.require([split_file, voc / "JPEGImages"], DOWNLOAD) and label_dir is not None:
        summary.note(f"source maps: {label_dir}")
        ids = read_id_list(split_file)
        summary.check_count("val images listed", len(ids), expected["val"], split_file, "val")
        tasks = [
            Task(i, (label_dir / f"{i}.png",), (out20 / f"{i}.png", out20b / f"{i}.png"))
            for i in ids
        ]
        stats = run_tasks(tasks, convert, args.workers, args.overwrite, "val")
        summary.run("val PAS-20 + PAS-20b labels", stats)
        summary.check_count("PAS-20 labels", count_files(out20, ".png"), expected["val"], out20,
                            "val")
        summary.check_count("PAS-20b labels", count_files(out20b, ".png"), expected["val"],
                            out20b, "val")
        no_image = [i for i in ids if not (voc / "JPEGImages" / f"{i}.jpg").is_file()]
        if no_image:
            summary.problem(
                f"{len(no_image)} listed images are missing from {voc / 'JPEGImages'} "
                f"(e.g. {no_image[0]}.jpg): get {DOWNLOAD}"
            )
        else:
            summary.note(f"images: all {len(ids)} listed images are in {voc / 'JPEGImages'}")
        check_pair_sizes(summary, "val", [(voc / "JPEGImages" / f"{i}.jpg", out / f"{i}.png")
                                          for i in ids for out in (out20, out20b)], args.workers)
    return summary.finish()


if __name__ == "__main__":
    sys.exit(main())
