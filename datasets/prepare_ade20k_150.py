#!/usr/bin/env python
"""ADE20K SceneParsing (ADEChallengeData2016) -> 150-class labels (A-150 validation).

Input (official download, under the dataset root):
    ADEChallengeData2016/images/validation/*.jpg
    ADEChallengeData2016/annotations/validation/*.png       0 = unlabelled, 1..150 = classes
Output:
    ADEChallengeData2016/annotations_detectron2/validation/*.png   0..149, 255 = unlabelled

Class k (1..150) becomes k - 1, the order of ``cat_seg/data/class_names/ade150.json``.
"""
import sys

import numpy as np

from preparation import (
    Summary, Task, build_parser, check_pair_sizes, check_values, checked_root, count_files,
    entry_point, expected_counts, read_index_map, run_tasks, write_png_label,
)

OFFICIAL_COUNTS = {"validation": 2000}
NUM_CLASSES = 150
IGNORE = 255
DOWNLOAD = (
    "ADEChallengeData2016.zip: http://data.csail.mit.edu/places/ADEchallenge/"
    "ADEChallengeData2016.zip, unzipped into the dataset root"
)

LUT = np.full(256, IGNORE, dtype=np.uint8)
LUT[1: NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)
VALID_VALUES = np.arange(NUM_CLASSES + 1)


def convert(task: Task) -> None:
    label = read_index_map(task.sources[0])
    check_values(label, VALID_VALUES, task.sources[0])
    write_png_label(LUT[label], task.outputs[0])


@entry_point("ade20k-150")
def main(argv=None) -> int:
    args = build_parser(__doc__, OFFICIAL_COUNTS).parse_args(argv)
    expected = expected_counts(args, OFFICIAL_COUNTS)
    root = checked_root(args)
    base = root / "ADEChallengeData2016"
    source_dir = base / "annotations" / "validation"
    image_dir = base / "images" / "validation"
    output_dir = base / "annotations_detectron2" / "validation"
    summary = Summary("prepare_ade20k_150.py", root)
    if summary.require([source_dir, image_dir], DOWNLOAD):
        tasks = [
            Task(p.stem, (p,), (output_dir / p.name,))
            for p in sorted(source_dir.glob("*.png")) if not p.name.startswith(".")
        ]
        stats = run_tasks(tasks, convert, args.workers, args.overwrite, "validation")
        summary.run("validation labels", stats)
        outputs = (("labels", output_dir, ".png"), ("images", image_dir, ".jpg"))
        for label, folder, suffix in outputs:
            summary.check_count(
                f"validation {label}", count_files(folder, suffix), expected["validation"],
                folder, "validation",
            )
        check_pair_sizes(summary, "validation", [(image_dir / f"{t.name}.jpg", t.outputs[0])
                                                 for t in tasks], args.workers)
    return summary.finish()


if __name__ == "__main__":
    sys.exit(main())
