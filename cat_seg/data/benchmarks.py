"""Registration of the open-vocabulary segmentation benchmarks (CAT-Seg's names and folders).

Every split below is registered in detectron2's ``DatasetCatalog`` / ``MetadataCatalog`` under
the dataset name CAT-Seg uses, with CAT-Seg's folder layout under ``$DETECTRON2_DATASETS``
(default ``./datasets``), so data prepared for CAT-Seg works unchanged::

    coco-stuff/images/{train2017,val2017}/*.jpg
    coco-stuff/annotations_detectron2/{train2017,val2017}/*.png    COCO-171 (ignore 255)
    ADEChallengeData2016/images/validation/*.jpg
    ADEChallengeData2016/annotations_detectron2/validation/*.png   A-150    (ignore 255)
    ADE20K_2021_17_01/images_detectron2/validation/*.jpg
    ADE20K_2021_17_01/annotations_detectron2/validation/*.tif      A-847    (uint16, ignore 65535)
    VOCdevkit/VOC2010/JPEGImages/*.jpg
    VOCdevkit/VOC2010/annotations_detectron2/pc59_val/*.png        PC-59    (ignore 255)
    VOCdevkit/VOC2010/annotations_detectron2/pc459_val/*.tif       PC-459   (uint16, ignore 459)
    VOCdevkit/VOC2012/JPEGImages/*.jpg
    VOCdevkit/VOC2012/annotations_detectron2/val/*.png             PAS-20   (ignore 255)
    VOCdevkit/VOC2012/annotations_detectron2_bg/val/*.png          PAS-20b  (ignore 255)

The ``annotations_detectron2*`` folders (and A-847's resized images) are written by the
``datasets/prepare_*.py`` scripts from the official downloads; see ``datasets/README.md``.

Metadata of every split: ``stuff_classes`` (from ``class_names/<file>.json``; "a, b" lists
synonyms, the first is the prompt name), ``ignore_label``, ``evaluator_type = "sem_seg"``,
``image_root``, ``sem_seg_root``, ``benchmark`` (the results-table column), and for PAS-20b
``background_class`` and ``prompt_classes`` (the vocabulary the model is prompted with, when it
differs from the evaluated ``stuff_classes``).

Ignore labels follow the references: 255 for 8-bit PNG labels, 65535 for A-847's 16-bit TIFFs,
459 for PC-459 (CAT-Seg's value). ``prepare_pascal_context.py`` writes 459 where a PASCAL-Context
map is unlabelled (``LabelMap`` 0); CAT-Seg's script leaves 65535 there, which detectron2's
evaluator miscounts (or fails on, for predicted indices >= 318), so its published runs can hardly
have met such pixels: in practice the files agree.

PAS-20b (``voc_2012_test_background_sem_seg``), as CAT-Seg evaluates it:
  * ground truth: VOC 2012 val with VOC's background (index 0) kept as class 20, i.e.
    ``stuff_classes`` = the 20 VOC classes + "background", ``background_class = 20``;
  * the evaluator counts any predicted index >= 20 as background (CAT-Seg's ``VOCbEvaluator``:
    ``pred[pred >= 20] = 20``), then computes mIoU over the 21 classes;
  * CAT-Seg's published PAS-20b numbers prompt the model with its ``voc20b.json``, which is not
    these 21 names but the 20 VOC classes followed by the 39 PC-59 classes that are not VOC
    classes (bag, bed, bench, ..., wood): those context classes stand in for "background" and all
    of them fold into class 20 through the rule above. That vocabulary is the metadata field
    ``prompt_classes`` (20 VOC + 39 PC-59 classes, 59 names), which the model prompts with.

Registration is lazy: it records paths and class names only. ``DatasetCatalog.get(name)``
lists the folders and raises :class:`DatasetNotPreparedError` (naming the path, the download and
the prepare script) when a folder is absent or empty, when no image has a label, or when the
image and label folders disagree. It never returns an empty dataset.
"""
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from .paths import dataset_root

__all__ = [
    "BENCHMARK_SPLITS",
    "OVSS_BENCHMARKS",
    "PUBLIC_BENCHMARK_DATASETS",
    "BenchmarkSplit",
    "DatasetNotPreparedError",
    "dataset_root",
    "load_benchmark_split",
    "load_class_names",
    "register_all_benchmarks",
]

_CLASS_NAMES_DIR = Path(__file__).resolve().parent / "class_names"
_README = "datasets/README.md"
# Examples of file names listed in an error message (the rest are counted).
_MAX_LISTED = 5
# Threads reading image sizes from file headers.
_SIZE_READERS = 16


class DatasetNotPreparedError(FileNotFoundError):
    """A benchmark's folders are missing, empty or inconsistent; the message says how to fix it."""


@dataclass(frozen=True)
class BenchmarkSplit:
    """One registered dataset split and where its files live (paths relative to the root)."""

    dataset_name: str  # detectron2 name (CAT-Seg's)
    benchmark: str  # short column name in results tables
    image_dir: str
    label_dir: str
    image_ext: str
    label_ext: str
    class_names: str  # stem of a JSON file in class_names/
    ignore_label: int
    prepare: str  # the command that writes the labels
    download: str  # what to download, and where to put it
    # True when the image folder holds exactly the split's images (every one needs a label);
    # False when it is shared with other splits (VOC's JPEGImages) and the labels pick the split.
    every_image_labelled: bool
    background_class: Optional[int] = None


_COCO_DOWNLOAD = (
    "COCO 2017 images (http://images.cocodataset.org/zips/train2017.zip and val2017.zip, "
    "unzipped into coco-stuff/images/) and the COCO-Stuff label maps "
    "(http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
    "stuffthingmaps_trainval2017.zip, unzipped into coco-stuff/annotations/)"
)
_ADE150_DOWNLOAD = (
    "ADEChallengeData2016.zip (http://data.csail.mit.edu/places/ADEchallenge/"
    "ADEChallengeData2016.zip), unzipped into the dataset root"
)
_ADE847_DOWNLOAD = (
    "ADE20K_2021_17_01.zip (https://groups.csail.mit.edu/vision/datasets/ADE20K/, free "
    "registration), unzipped into the dataset root"
)
_PC_DOWNLOAD = (
    "VOCtrainval_03-May-2010.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2010/"
    "VOCtrainval_03-May-2010.tar) and the PASCAL-Context maps trainval.tar.gz "
    "(https://www.cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz, unpacked into "
    "VOCdevkit/VOC2010/trainval/)"
)
_VOC_DOWNLOAD = (
    "VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
    "VOCtrainval_11-May-2012.tar), unpacked into the dataset root"
)

BENCHMARK_SPLITS: Tuple[BenchmarkSplit, ...] = (
    BenchmarkSplit(
        "coco_2017_train_stuff_all_sem_seg", "COCO-171",
        "coco-stuff/images/train2017", "coco-stuff/annotations_detectron2/train2017",
        "jpg", "png", "coco", 255, "python datasets/prepare_coco_stuff.py", _COCO_DOWNLOAD, True,
    ),
    BenchmarkSplit(
        "coco_2017_test_stuff_all_sem_seg", "COCO-171",
        "coco-stuff/images/val2017", "coco-stuff/annotations_detectron2/val2017",
        "jpg", "png", "coco", 255, "python datasets/prepare_coco_stuff.py", _COCO_DOWNLOAD, True,
    ),
    BenchmarkSplit(
        "ade20k_150_test_sem_seg", "A-150",
        "ADEChallengeData2016/images/validation",
        "ADEChallengeData2016/annotations_detectron2/validation",
        "jpg", "png", "ade150", 255, "python datasets/prepare_ade20k_150.py", _ADE150_DOWNLOAD,
        True,
    ),
    BenchmarkSplit(
        "ade20k_full_sem_seg_freq_val_all", "A-847",
        "ADE20K_2021_17_01/images_detectron2/validation",
        "ADE20K_2021_17_01/annotations_detectron2/validation",
        "jpg", "tif", "ade847", 65535, "python datasets/prepare_ade20k_847.py", _ADE847_DOWNLOAD,
        True,
    ),
    BenchmarkSplit(
        "context_59_test_sem_seg", "PC-59",
        "VOCdevkit/VOC2010/JPEGImages", "VOCdevkit/VOC2010/annotations_detectron2/pc59_val",
        "jpg", "png", "pc59", 255, "python datasets/prepare_pascal_context.py", _PC_DOWNLOAD,
        False,
    ),
    BenchmarkSplit(
        "context_459_test_sem_seg", "PC-459",
        "VOCdevkit/VOC2010/JPEGImages", "VOCdevkit/VOC2010/annotations_detectron2/pc459_val",
        "jpg", "tif", "pc459", 459, "python datasets/prepare_pascal_context.py", _PC_DOWNLOAD,
        False,
    ),
    BenchmarkSplit(
        "voc_2012_test_sem_seg", "PAS-20",
        "VOCdevkit/VOC2012/JPEGImages", "VOCdevkit/VOC2012/annotations_detectron2/val",
        "jpg", "png", "voc20", 255, "python datasets/prepare_voc.py", _VOC_DOWNLOAD, False,
    ),
    BenchmarkSplit(
        "voc_2012_test_background_sem_seg", "PAS-20b",
        "VOCdevkit/VOC2012/JPEGImages", "VOCdevkit/VOC2012/annotations_detectron2_bg/val",
        "jpg", "png", "voc20b", 255, "python datasets/prepare_voc.py", _VOC_DOWNLOAD, False,
        background_class=20,
    ),
)

# The six zero-shot columns of the OVSS results table, in the papers' order.
OVSS_BENCHMARKS: Tuple[str, ...] = ("A-847", "PC-459", "A-150", "PC-59", "PAS-20", "PAS-20b")

# The public benchmarks (the six + COCO-Stuff val), whose data lie under the dataset root:
# short name -> the detectron2 name of its test split. cat_seg.data.ALL_BENCHMARK_DATASETS adds
# the synthetic ones.
PUBLIC_BENCHMARK_DATASETS: Dict[str, str] = {
    "A-847": "ade20k_full_sem_seg_freq_val_all",
    "PC-459": "context_459_test_sem_seg",
    "A-150": "ade20k_150_test_sem_seg",
    "PC-59": "context_59_test_sem_seg",
    "PAS-20": "voc_2012_test_sem_seg",
    "PAS-20b": "voc_2012_test_background_sem_seg",
    "COCO-171": "coco_2017_test_stuff_all_sem_seg",
}


@lru_cache(maxsize=None)
def _class_names(stem: str) -> Tuple[str, ...]:
    path = _CLASS_NAMES_DIR / f"{stem}.json"
    if not path.is_file():
        known = sorted(p.stem for p in _CLASS_NAMES_DIR.glob("*.json"))
        raise FileNotFoundError(f"class-name file {path} does not exist; known: {known}")
    with open(path, encoding="utf-8") as f:
        try:
            names = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); it must hold a JSON list of "
                             'class names, e.g. ["sky", "tree"]') from error
    if not isinstance(names, list) or not names or not all(
        isinstance(n, str) and n.strip() == n and n for n in names
    ):
        raise ValueError(f"{path} must be a JSON list of non-empty, stripped class names")
    if len(set(names)) != len(names):
        raise ValueError(f"{path} lists a class name twice")
    return tuple(names)


def load_class_names(stem: str) -> List[str]:
    """Class names, in label-index order, of ``cat_seg/data/class_names/<stem>.json``."""
    return list(_class_names(stem))


def _not_prepared(split: BenchmarkSplit, root: str, problem: str) -> DatasetNotPreparedError:
    return DatasetNotPreparedError(
        f"dataset '{split.dataset_name}' ({split.benchmark}) is not ready: {problem}. "
        f"To prepare it, download {split.download}; then run `{split.prepare} --root {root}`. "
        f"The dataset root is {os.path.abspath(root)} ($DETECTRON2_DATASETS, default ./datasets). "
        f"See {_README}."
    )


def _files_by_stem(split: BenchmarkSplit, root: str, folder: str, ext: str, what: str):
    """{stem: path} of the ``*.ext`` files in ``root/folder``, hidden (temporary) files skipped."""
    path = os.path.abspath(os.path.join(root, folder))
    if not os.path.isdir(path):
        raise _not_prepared(split, root, f"the {what} folder {path} does not exist")
    suffix = "." + ext
    files = {
        name[: -len(suffix)]: os.path.join(root, folder, name)
        for name in os.listdir(path)
        if name.endswith(suffix) and not name.startswith(".")
    }
    if not files:
        raise _not_prepared(split, root, f"the {what} folder {path} has no *{suffix} file")
    return files


def _listed(stems) -> str:
    stems = sorted(stems)
    more = f" and {len(stems) - _MAX_LISTED} more" if len(stems) > _MAX_LISTED else ""
    return ", ".join(stems[:_MAX_LISTED]) + more


def _image_size(path: str) -> Tuple[int, int]:
    """(height, width) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except OSError as e:
        raise ValueError(f"image {path} is unreadable ({e}); replace it and re-run") from e
    return height, width


def load_benchmark_split(split: BenchmarkSplit, root: str) -> List[dict]:
    """detectron2 semantic-segmentation dicts of one split, sorted by file name.

    Each dict: ``file_name``, ``sem_seg_file_name``, ``height``, ``width`` (read from the image
    header). Raises :class:`DatasetNotPreparedError` when a folder is absent or empty, when no
    image has a label, when a label has no image, or (for splits whose image folder is the split)
    when an image has no label.
    """
    labels = _files_by_stem(split, root, split.label_dir, split.label_ext, "label")
    images = _files_by_stem(split, root, split.image_dir, split.image_ext, "image")
    image_dir = os.path.abspath(os.path.join(root, split.image_dir))
    label_dir = os.path.abspath(os.path.join(root, split.label_dir))
    labelled = sorted(labels.keys() & images.keys())
    if not labelled:
        raise _not_prepared(
            split, root,
            f"none of the {len(images)} images in {image_dir} has a label in {label_dir}",
        )
    orphans = labels.keys() - images.keys()
    if orphans:
        raise _not_prepared(
            split, root,
            f"{len(orphans)} labels in {label_dir} have no image in {image_dir} "
            f"({_listed(orphans)})",
        )
    unlabelled = images.keys() - labels.keys()
    if split.every_image_labelled and unlabelled:
        raise _not_prepared(
            split, root,
            f"{len(unlabelled)} of the {len(images)} images in {image_dir} have no label in "
            f"{label_dir} ({_listed(unlabelled)}); the preparation was interrupted or the "
            "label folder is stale",
        )
    # Header reads are I/O-bound on cold or network storage (COCO train: 118k files), so they
    # overlap in threads; on a warm cache each costs ~0.1-0.2 ms (5000 images: 0.9 s).
    with ThreadPoolExecutor(_SIZE_READERS) as pool:
        sizes = list(pool.map(_image_size, (images[stem] for stem in labelled)))
    return [
        {
            "file_name": images[stem],
            "sem_seg_file_name": labels[stem],
            "height": height,
            "width": width,
        }
        for stem, (height, width) in zip(labelled, sizes)
    ]


def _register(split: BenchmarkSplit, root: str) -> None:
    image_root = os.path.join(root, split.image_dir)
    name = split.dataset_name
    registered = name in DatasetCatalog and name in MetadataCatalog
    if registered and MetadataCatalog.get(name).get("image_root") == image_root:
        return  # already registered under this root
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    if name in MetadataCatalog:
        # Metadata refuses to change a field; dropping it lets the new root replace the paths.
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda s=split, r=root: load_benchmark_split(s, r))
    extra = {}
    if split.background_class is not None:
        # PAS-20b: prompt with the VOC classes + the PC-59 context classes (CAT-Seg's voc20b.json
        # vocabulary, see the module doc); every context prediction folds into background.
        voc = load_class_names("voc20")
        extra = {"background_class": split.background_class,
                 "prompt_classes": voc + [c for c in load_class_names("pc59") if c not in voc]}
    MetadataCatalog.get(name).set(
        stuff_classes=load_class_names(split.class_names),
        ignore_label=split.ignore_label,
        evaluator_type="sem_seg",
        image_root=image_root,
        sem_seg_root=os.path.join(root, split.label_dir),
        benchmark=split.benchmark,
        **extra,
    )


def register_all_benchmarks(root: Optional[str] = None) -> None:
    """Register every split under ``root`` (see :func:`dataset_root`); touches no dataset file.

    Idempotent: a second call with the same root changes nothing; with another root it
    re-registers the same names with the new paths.
    """
    root = dataset_root(root)
    for split in BENCHMARK_SPLITS:
        _register(split, root)


register_all_benchmarks()
