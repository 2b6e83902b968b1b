"""Generating the synthetic dataset on disk, once, atomically.

Layout of ``<dataset_dir>`` (``$DETECTRON2_DATASETS/synthetic`` by default)::

    manifest.json                 fingerprint of the generator, image counts, image sizes
    images/<split>/NNNNNN.jpg     RGB scenes of the rendered splits
    annotations/<split>/NNNNNN.png class indices (uint8), 255 = ignore

Rendered splits (:data:`RENDERED_SPLITS`): image ``i`` of a split is drawn from
``numpy.random.default_rng([SEED, split code, i])``, so it is the same whatever the number of
images asked for and on every machine. Every split has its own code, and the CLIP pretraining
bank has another (:data:`BANK_STREAM`), so no validation image is a bank scene or a training image.

Label-only splits reuse the rendered images with other label maps:

* ``selection_train``: the images of ``seen_train``, labelled over the 13 selection-regime
  training classes; the pixels of the three selection classes carry the ignore label
  (ZegCLIP's inductive setting: an unseen class is never supervised, not even as background).
* ``generalized_val``: the images of ``seen_val``, ``unseen_val`` and ``mixed_val`` (scenes that
  always show both seen and held-out classes), labelled over all 22 classes of the world
  (seen first), for the generalized protocol (one vocabulary of seen and held-out names).

The folder is written into a temporary sibling and renamed into place, so a reader never sees half
a dataset and two processes generating at once (e.g. two DDP ranks) both end with the same
complete folder. A folder whose fingerprint or counts differ from what is asked for (the
generator changed) is replaced the same way.
"""
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from cat_seg.data.synthetic.classes import (
    ALL_CLASSES,
    SEEN_CLASSES,
    SELECTION_TRAINING_CLASSES,
    UNSEEN_CLASSES,
)
from cat_seg.data.synthetic.scenes import IGNORE_LABEL, render_mixed_scene, render_scene

# Bump whenever the drawing code changes its output (class specs are fingerprinted as well).
GENERATOR_VERSION = 3
SEED = 20240613
# Image height and width are each drawn from this range (pixels).
IMAGE_SIZE_RANGE = (160, 256)
# rendered split -> (classes its label indices refer to, code in the random seed). mixed_val
# draws from all 22 classes and keeps only scenes that show a seen and a held-out class.
RENDERED_SPLITS = {
    "seen_train": (SEEN_CLASSES, 0),
    "seen_val": (SEEN_CLASSES, 1),
    "unseen_val": (UNSEEN_CLASSES, 2),
    "mixed_val": (ALL_CLASSES, 4),
}
# The web demo's example pictures are drawn by split name from this table.
SPLITS = RENDERED_SPLITS
# Code of the CLIP pretraining bank's scenes (:mod:`.image_text`); distinct from every split's.
BANK_STREAM = 3
# label-only split -> (classes its label indices refer to, rendered source splits); a source
# label becomes the index of the class of the same name, or IGNORE_LABEL (:func:`relabel_table`).
DERIVED_SPLITS = {
    "selection_train": (SELECTION_TRAINING_CLASSES, ["seen_train"]),
    "generalized_val": (ALL_CLASSES, ["seen_val", "unseen_val", "mixed_val"]),
}
MANIFEST = "manifest.json"
# Leftovers of killed generator runs older than this are removed (seconds).
_STALE_AGE = 3600


def relabel_table(source_classes, target_classes) -> np.ndarray:
    """(256,) uint8 lookup sending a source class index to the index of the class of the same
    name in ``target_classes``, or to IGNORE_LABEL when the target has no such class (and
    IGNORE_LABEL to itself)."""
    target = {c.name: i for i, c in enumerate(target_classes)}
    table = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for i, cls in enumerate(source_classes):
        table[i] = target.get(cls.name, IGNORE_LABEL)
    return table


def generator_fingerprint() -> str:
    """Hash of everything that determines the generated pixels."""
    spec = {
        "version": GENERATOR_VERSION,
        "seed": SEED,
        "size": IMAGE_SIZE_RANGE,
        "splits": {s: [asdict(c) for c in classes] for s, (classes, _) in RENDERED_SPLITS.items()},
        "derived": {s: [[c.name for c in classes], sources]
                    for s, (classes, sources) in DERIVED_SPLITS.items()},
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def image_path(dataset_dir: str, split: str, index: int) -> str:
    return os.path.join(dataset_dir, "images", split, f"{index:06d}.jpg")


def label_path(dataset_dir: str, split: str, index: int) -> str:
    return os.path.join(dataset_dir, "annotations", split, f"{index:06d}.png")


def derived_label_path(dataset_dir: str, split: str, source: str, index: int) -> str:
    """Label map of image ``index`` of rendered split ``source`` in label-only split ``split``."""
    return os.path.join(dataset_dir, "annotations", split, f"{source}_{index:06d}.png")


def derived_records(split: str, counts: Dict[str, int]) -> List[Tuple[str, int]]:
    """``[(source split, index)]``: the images of label-only split ``split``, in order."""
    return [(source, i) for source in DERIVED_SPLITS[split][1] for i in range(counts[source])]


def read_manifest(dataset_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(dataset_dir, MANIFEST)) as f:
            return json.load(f)
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def _is_current(manifest: Optional[dict], counts: Dict[str, int]) -> bool:
    return (
        manifest is not None
        and manifest.get("fingerprint") == generator_fingerprint()
        and manifest.get("counts") == counts
    )


def _render(split: str, index: int):
    classes, code = RENDERED_SPLITS[split]
    rng = np.random.default_rng([SEED, code, index])
    if split == "mixed_val":
        unseen = np.array([c in UNSEEN_CLASSES for c in ALL_CLASSES])
        return render_mixed_scene(classes, unseen, rng, *IMAGE_SIZE_RANGE)
    return render_scene(classes, rng, *IMAGE_SIZE_RANGE)


def _generate(out_dir: str, counts: Dict[str, int]) -> None:
    sizes = {}
    labels = {}
    for split, count in counts.items():
        os.makedirs(os.path.join(out_dir, "images", split))
        os.makedirs(os.path.join(out_dir, "annotations", split))
        sizes[split] = []
        labels[split] = []
        for i in range(count):
            image, label = _render(split, i)
            Image.fromarray(image).save(image_path(out_dir, split, i), quality=92)
            Image.fromarray(label).save(label_path(out_dir, split, i))
            sizes[split].append(list(label.shape))
            labels[split].append(label)
    for split, (classes, sources) in DERIVED_SPLITS.items():
        os.makedirs(os.path.join(out_dir, "annotations", split))
        for source in sources:
            table = relabel_table(RENDERED_SPLITS[source][0], classes)
            for i, label in enumerate(labels[source]):
                Image.fromarray(table[label]).save(derived_label_path(out_dir, split, source, i))
    manifest = {"fingerprint": generator_fingerprint(), "counts": counts, "sizes": sizes}
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f)


def _remove_leftovers(parent: str) -> None:
    """Delete temporary folders of generator runs that were killed long ago."""
    now = time.time()
    for name in os.listdir(parent):
        if name.startswith((".synthetic-tmp-", ".synthetic-stale-")):
            path = os.path.join(parent, name)
            try:
                if now - os.path.getmtime(path) > _STALE_AGE:
                    shutil.rmtree(path, ignore_errors=True)
            except FileNotFoundError:
                pass


def _install(tmp_dir: str, dataset_dir: str, counts: Dict[str, int]) -> None:
    """Rename ``tmp_dir`` to ``dataset_dir``, replacing an outdated one, tolerating a concurrent
    process doing the same."""
    parent = os.path.dirname(dataset_dir)
    for _ in range(10):
        try:
            os.rename(tmp_dir, dataset_dir)  # atomic; fails when dataset_dir is a non-empty folder
            return
        except OSError:
            if _is_current(read_manifest(dataset_dir), counts):
                return  # another process installed the same data first
            stale = os.path.join(parent, f".synthetic-stale-{uuid.uuid4().hex}")
            try:
                os.rename(dataset_dir, stale)
            except FileNotFoundError:
                continue  # another process moved it away first; retry
            shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"could not install the synthetic dataset at {dataset_dir}")


def ensure_synthetic_dataset(dataset_dir: str, counts: Dict[str, int]) -> dict:
    """Generate the dataset into ``dataset_dir`` unless an up-to-date copy is there.

    ``counts`` maps every rendered split (keys of ``RENDERED_SPLITS``) to its number of images;
    the label-only splits (``DERIVED_SPLITS``) are written from them. Returns the manifest.
    """
    if set(counts) != set(RENDERED_SPLITS):
        raise ValueError(f"the synthetic dataset needs an image count for each of the splits "
                         f"{sorted(RENDERED_SPLITS)}, got {sorted(counts)}")
    for split, count in counts.items():
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"the synthetic split {split!r} needs a positive image count, got {count!r}")
    manifest = read_manifest(dataset_dir)
    if _is_current(manifest, counts):
        return manifest
    if manifest is None and os.path.isdir(dataset_dir) and os.listdir(dataset_dir):
        raise RuntimeError(
            f"{dataset_dir} exists but holds no synthetic-dataset manifest; it is not a folder "
            "this generator wrote. Move it away, or set DETECTRON2_DATASETS to another root"
        )
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    os.makedirs(parent, exist_ok=True)
    _remove_leftovers(parent)
    # os.mkdir (not tempfile.mkdtemp, which makes it private) so the folder follows the umask.
    tmp_dir = os.path.join(parent, f".synthetic-tmp-{uuid.uuid4().hex}")
    os.mkdir(tmp_dir)
    try:
        _generate(tmp_dir, counts)
        _install(tmp_dir, dataset_dir, counts)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # nothing left once renamed
    return read_manifest(dataset_dir)
