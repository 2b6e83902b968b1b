"""Datasets of your own, described by a small YAML (or JSON) file instead of Python code.

A description names a folder of images, a folder of label maps and a class list; registering it
makes the dataset usable by name wherever a built-in one is (``DATASETS.TRAIN`` / ``TEST``,
``TEST.BENCHMARKS``, ``eval_ahs.sh``'s ``BENCHMARKS``). The schema (docs/custom_datasets.md)::

    name: fruit_val            # detectron2 dataset name (letters, digits, _ . + -)
    image_dir: images/val      # relative paths are relative to this file's folder
    label_dir: labels/val
    image_suffix: .jpg         # what an image's file name ends with (default .jpg)
    label_suffix: .png         # same for its label (default .png); "_mask.png" works too
    classes: classes.txt       # JSON list, or one name per line; or an inline YAML list
    ignore_label: 255          # label value of unlabelled pixels (default 255)
    label_offset: 0            # the file stores class c as c + offset (default 0); values
                               # below the offset (0 with offset 1) are unlabelled
    benchmark: Fruit           # results-table column (default: the name)
    split: val                 # optional, recorded in the metadata
    allow_unlabelled_images: false   # true: images without a label are skipped (not an error)

or, for several splits sharing the class list, ``splits: {train: {image_dir: ..., label_dir:
...}, val: {...}}`` beside the shared keys: each split registers ``<name>_<split>`` and may
override any shared key.

Files are matched by their path relative to the folder (sub-folders are searched) with the
suffix removed: ``images/a/1.jpg`` pairs with ``labels/a/1.png``. Labels are single-channel
integer maps, read exactly (:mod:`cat_seg.data.label_io`).

How the offset reaches every reader: each record of a dataset with ``label_offset != 0`` carries
``"label_offset"``, and :func:`cat_seg.data.label_io.read_record_label` (the mapper, the
evaluator, the vis/ pictures) applies it; built-in datasets have no such field (offset 0).

:func:`check_folder_dataset` reads every image and label and lists every problem, each naming
its file (``ahs-seg check-data``, ``tools/check_data.py``); registration and loading only check
what is cheap (the description, the folders, the pairing), as the built-in benchmarks do.
"""
import difflib
import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image, UnidentifiedImageError

from .benchmarks import DatasetNotPreparedError
from ..utils.paths import file_problem, folder_problem, resolve_repo_path
from .label_io import LABEL_OFFSET_KEY, read_label

__all__ = [
    "FolderDataset",
    "FolderDatasetError",
    "FolderDatasetReport",
    "check_folder_dataset",
    "check_folder_dataset_paths",
    "class_name_lines",
    "config_folder_dataset_paths",
    "folder_benchmark_datasets",
    "load_folder_dataset",
    "read_folder_dataset_description",
    "register_config_folder_datasets",
    "register_folder_dataset",
    "register_folder_datasets",
]

_DOCS = "docs/custom_datasets.md"
# Keys of one split's description (a split of a ``splits:`` file may set all but name/splits).
_KEYS = ("name", "image_dir", "label_dir", "image_suffix", "label_suffix", "classes",
         "ignore_label", "label_offset", "benchmark", "split", "allow_unlabelled_images")
_REQUIRED = ("name", "image_dir", "label_dir", "classes")
# Dataset and benchmark names become file and folder names (per-class CSV, vis/<benchmark>/).
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# ... and must fit a file name with what is added (sem_seg_per_class_<name>.csv.rows.<pid>).
_MAX_NAME_LENGTH = 100
# Characters no class name holds (whitespace such as a newline counts as a space instead); the
# demo's vocabulary check uses the same.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# File names listed in one message before the rest are counted.
_MAX_LISTED = 5
# Threads reading image headers (registration) or decoding whole files (the check).
_READERS = 8


class FolderDatasetError(ValueError):
    """A dataset description is invalid; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class FolderDataset:
    """One split described by a file (all paths absolute)."""

    name: str
    image_dir: str
    label_dir: str
    image_suffix: str
    label_suffix: str
    class_names: Tuple[str, ...]
    ignore_label: int
    label_offset: int
    benchmark: str
    description_file: str
    split: Optional[str] = None
    allow_unlabelled_images: bool = False


# ------------------------------------------------------------------------ the description file

def _fail(path: str, problem: str) -> FolderDatasetError:
    return FolderDatasetError(f"dataset description {path}: {problem} (schema: {_DOCS})")


def _read_mapping(path: str) -> dict:
    problem = file_problem(path)
    if problem:
        raise FolderDatasetError(f"dataset description {path} {problem}; give the path of "
                                 f"a .yaml or .json file (schema: {_DOCS})")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as error:
        detail = " ".join(str(error).split())
        raise _fail(path, f"is not valid {'JSON' if path.endswith('.json') else 'YAML'} "
                          f"({detail})") from None
    if not isinstance(data, dict):
        raise _fail(path, "must be a mapping of keys (name: ..., image_dir: ..., ...), got "
                          f"{type(data).__name__}")
    return data


def _check_keys(path: str, entry: dict, allowed: Sequence[str], where: str) -> None:
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"the keys are {', '.join(allowed)}"
            raise _fail(path, f"unknown key {key!r}{where}; {hint}")


def _string(path: str, entry: dict, key: str, default: Optional[str] = None) -> Optional[str]:
    value = entry.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _integer(path: str, entry: dict, key: str, default: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"{key} must be an integer, got {value!r}")
    return value


def _suffix(path: str, entry: dict, key: str, default: str) -> str:
    suffix = _string(path, entry, key, default)
    # Every file name has an extension: "jpg" can only mean ".jpg".
    return suffix if "." in suffix else "." + suffix


def _folder(base: str, value: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def class_name_lines(text: str, source: str) -> List[str]:
    """The class names of a text file, one per line (stripped; blank lines at the end ignored);
    ``ValueError`` naming ``source`` and the line when one before the last is empty. The reader
    of description ``classes`` files and of the demo's ``--vocabulary-file``."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if "" in lines:
        raise ValueError(f"{source} has an empty line {lines.index('') + 1}: every line up to "
                         "the last is one class, in label order")
    return lines


def _class_names(path: str, base: str, value) -> Tuple[str, ...]:
    """The class list: an inline YAML list, or a file (JSON list, or one name per line)."""
    source = path
    if isinstance(value, str):
        source = _folder(base, value)
        problem = file_problem(source)
        if problem:
            raise _fail(path, f"the class-name file {source} (key classes) {problem}; give a "
                              ".txt file with one name per line or a .json list")
        with open(source, encoding="utf-8") as f:
            text = f.read()
        if source.endswith(".json"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise _fail(path, f"the class-name file {source} is not valid JSON ({error}); "
                                  'it must hold a list such as ["sky", "tree"]') from None
        else:
            try:
                value = class_name_lines(text, f"the class-name file {source}")
            except ValueError as error:
                raise _fail(path, str(error)) from None
    if not isinstance(value, list) or not value:
        raise _fail(path, f"classes must name a class-name file or be a non-empty list; "
                          f"{source} gives {type(value).__name__}")
    if not all(isinstance(name, str) and name.strip() for name in value):
        raise _fail(path, f"every class name in {source} must be a non-empty string")
    # Whitespace runs (a newline in a JSON name) as one space, as the demo's vocabulary.
    names = tuple(" ".join(name.split()) for name in value)
    control = [name for name in names if CONTROL_CHARACTERS.search(name)]
    if control:
        raise _fail(path, f"class names {control[:3]} in {source} hold control characters "
                          "(NUL, escape, ...); remove those characters")
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise _fail(path, f"{source} lists the classes {twice} more than once; per-class "
                          "results would overwrite each other")
    return names


def _parse_split(path: str, entry: dict) -> FolderDataset:
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise _fail(path, f"missing key(s) {', '.join(missing)}")
    base = os.path.dirname(path)
    name = _string(path, entry, "name")
    benchmark = _string(path, entry, "benchmark", name)
    for key, value in (("name", name), ("benchmark", benchmark)):
        if not _NAME_PATTERN.fullmatch(value):
            raise _fail(path, f"{key} {value!r} may hold only letters, digits and _ . + - (it "
                              "names files and folders of the results)")
        if len(value) > _MAX_NAME_LENGTH:
            raise _fail(path, f"{key} {value[:20]!r}... has {len(value)} characters; give at most "
                              f"{_MAX_NAME_LENGTH} (it names files and folders of the results)")
    classes = _class_names(path, base, entry["classes"])
    ignore = _integer(path, entry, "ignore_label", 255)
    offset = _integer(path, entry, "label_offset", 0)
    if offset < 0:
        raise _fail(path, f"label_offset {offset} is negative; it is what the files add to "
                          "every class index (0: none, 1: value 0 is unlabelled)")
    if 0 <= ignore < len(classes):
        free = 255 if len(classes) < 255 else 65535  # 65535: 16-bit labels for > 255 classes
        hint = (f"; with label_offset {offset}, file values below {offset} are unlabelled "
                f"anyway: set ignore_label to a value no class uses, e.g. {free}") if offset \
            else f": set it to a value no class uses, e.g. {free}"
        raise _fail(path, f"ignore_label {ignore} is the index of class {classes[ignore]!r} of "
                          f"the {len(classes)} classes{hint}")
    unlabelled = entry.get("allow_unlabelled_images", False)
    if not isinstance(unlabelled, bool):
        raise _fail(path, f"allow_unlabelled_images must be true or false, got {unlabelled!r}")
    return FolderDataset(
        name=name,
        image_dir=_folder(base, _string(path, entry, "image_dir")),
        label_dir=_folder(base, _string(path, entry, "label_dir")),
        image_suffix=_suffix(path, entry, "image_suffix", ".jpg"),
        label_suffix=_suffix(path, entry, "label_suffix", ".png"),
        class_names=classes,
        ignore_label=ignore,
        label_offset=offset,
        benchmark=benchmark,
        description_file=path,
        split=_string(path, entry, "split"),
        allow_unlabelled_images=unlabelled,
    )


def read_folder_dataset_description(path: str) -> List[FolderDataset]:
    """The split(s) a description file describes; raises :class:`FolderDatasetError`.

    Reads only the description and its class-name file: the folders are not looked at.
    """
    path = os.path.abspath(os.path.expanduser(str(path)))
    data = _read_mapping(path)
    if "splits" not in data:
        _check_keys(path, data, _KEYS + ("splits",), "")
        return [_parse_split(path, data)]
    shared = {key: value for key, value in data.items() if key != "splits"}
    _check_keys(path, shared, _KEYS, "")
    splits = data["splits"]
    if not isinstance(splits, dict) or not splits:
        raise _fail(path, "splits must map split names to their keys, e.g. "
                          "splits: {train: {image_dir: ..., label_dir: ...}, val: {...}}")
    if "name" not in shared:
        raise _fail(path, "missing key name (each split registers <name>_<split>)")
    datasets = []
    for split, entry in splits.items():
        entry = entry or {}
        if not isinstance(entry, dict):
            raise _fail(path, f"split {split!r} must be a mapping of keys, got {entry!r}")
        own = [k for k in _KEYS if k not in ("name", "split")]
        _check_keys(path, entry, own, f" in split {split!r}")
        merged = {**shared, **entry, "split": str(split), "name": f"{shared['name']}_{split}"}
        datasets.append(_parse_split(path, merged))
    benchmarks = Counter(d.benchmark.casefold() for d in datasets)  # vis/<benchmark>/, any disk
    twice = sorted(b for b, count in benchmarks.items() if count > 1)
    if twice:
        raise _fail(path, f"several splits have the benchmark name {twice[0]!r}; give "
                          "benchmark inside the split that is evaluated, not beside splits")
    return datasets


# ------------------------------------------------------------------------ the folders

def _files(root: str, suffix: str, skip: str) -> Dict[str, str]:
    """{path relative to ``root`` without ``suffix`` ("/"-separated): path} of the files under
    ``root`` whose name ends with ``suffix``; hidden files and folders and the folder ``skip``
    (the other folder, when nested inside this one) are left out."""
    files = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")
                               and os.path.join(folder, d) != skip)
        for name in names:
            if name.endswith(suffix) and not name.startswith(".") and len(name) > len(suffix):
                relative = os.path.relpath(os.path.join(folder, name), root)
                files[relative[: -len(suffix)].replace(os.sep, "/")] = os.path.join(folder, name)
    return files


def _suffixes_found(root: str) -> str:
    """What a folder holds instead, e.g. "12 *.JPG, 3 *.txt" (for a "no *.jpg file" message)."""
    found = Counter(os.path.splitext(name)[1] or name
                    for _, _, names in os.walk(root) for name in names if not name.startswith("."))
    return ", ".join(f"{count} *{ext}" for ext, count in found.most_common(3)) or "no file"


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def _folder_problem(what: str, root: str) -> Optional[str]:
    """Why the image or label folder ``root`` cannot be read (absent, a file), or None."""
    problem = folder_problem(root)
    if problem is None:
        return None
    return f"the {what} folder {root} {problem} (key {what}_dir: give the folder of the {what}s)"


def check_folder_dataset_paths(names: Iterable[str]) -> None:
    """Before any work: the image and label folders of the described datasets among ``names``
    (others are ignored) exist and are folders; raises :class:`DatasetNotPreparedError` with
    one line naming them. (Their contents are checked when a dataset is loaded.)"""
    for name in names:
        dataset = _registered.get(name)
        if dataset is None:
            continue
        problems = [p for p in (_folder_problem("image", dataset.image_dir),
                                _folder_problem("label", dataset.label_dir)) if p]
        if problems:
            raise DatasetNotPreparedError(
                f"dataset {dataset.name!r} ({dataset.description_file}): {'; '.join(problems)}")


def _pairs(dataset: FolderDataset) -> Tuple[Dict[str, str], Dict[str, str], List[str]]:
    """(images, labels, problems with the folders: absent or without a matching file)."""
    problems, found = [], []
    for what, root, suffix, other in (
        ("image", dataset.image_dir, dataset.image_suffix, dataset.label_dir),
        ("label", dataset.label_dir, dataset.label_suffix, dataset.image_dir),
    ):
        problem = _folder_problem(what, root)
        if problem:
            problems.append(problem)
            found.append({})
            continue
        files = _files(root, suffix, other)
        if not files:
            problems.append(f"the {what} folder {root} is empty: no *{suffix} file (it holds "
                            f"{_suffixes_found(root)}; key {what}_suffix)")
        found.append(files)
    return found[0], found[1], problems


def _image_size(path: str) -> Tuple[int, int]:
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetNotPreparedError(f"image {path} is unreadable ({error}); run "
                                      f"`ahs-seg check-data` on its description") from None
    return height, width


def load_folder_dataset(dataset: FolderDataset) -> List[dict]:
    """detectron2 semantic-segmentation records of one split, sorted by file path.

    Each record: ``file_name``, ``sem_seg_file_name``, ``height``, ``width`` (image header)
    and, when the offset is not 0, ``label_offset``. Raises :class:`DatasetNotPreparedError`
    (a ``FileNotFoundError``) naming the folder or files when a folder is absent or empty, when
    a label has no image or (unless ``allow_unlabelled_images``) an image has no label.
    """
    images, labels, problems = _pairs(dataset)
    if not problems:
        orphans = labels.keys() - images.keys()
        if orphans:
            problems.append(f"{len(orphans)} label(s) in {dataset.label_dir} have no image "
                            f"*{dataset.image_suffix} in {dataset.image_dir} ({_listed(orphans)})")
        unlabelled = images.keys() - labels.keys()
        if unlabelled and not dataset.allow_unlabelled_images:
            problems.append(f"{len(unlabelled)} image(s) in {dataset.image_dir} have no label "
                            f"*{dataset.label_suffix} in {dataset.label_dir} "
                            f"({_listed(unlabelled)}); set allow_unlabelled_images: true to "
                            "skip them")
    if problems:
        raise DatasetNotPreparedError(
            f"dataset {dataset.name!r} ({dataset.description_file}) is not ready: "
            f"{'; '.join(problems)}. `ahs-seg check-data {dataset.description_file}` lists "
            "every problem")
    keys = sorted(images.keys() & labels.keys())
    with ThreadPoolExecutor(_READERS) as pool:
        sizes = list(pool.map(_image_size, (images[key] for key in keys)))
    extra = {LABEL_OFFSET_KEY: dataset.label_offset} if dataset.label_offset else {}
    return [{"file_name": images[key], "sem_seg_file_name": labels[key],
             "height": height, "width": width, **extra}
            for key, (height, width) in zip(keys, sizes)]


# ------------------------------------------------------------------------ registration

# What this module registered: dataset name -> its FolderDataset; short name (each dataset's
# benchmark and its own name, both accepted by eval_ahs.sh's BENCHMARKS) -> dataset name.
_registered: Dict[str, FolderDataset] = {}
_short_names: Dict[str, str] = {}


def _builtin_benchmarks() -> Dict[str, str]:
    from . import ALL_BENCHMARK_DATASETS  # the package imports this module

    return ALL_BENCHMARK_DATASETS


def _check_names_free(dataset: FolderDataset) -> None:
    """Raise when ``dataset``'s name or benchmark is another dataset's (built-in or not)."""
    owner = _registered.get(dataset.name)
    if owner is None and dataset.name in DatasetCatalog.list():
        raise _fail(dataset.description_file,
                    f"the dataset name {dataset.name!r} is already registered (a built-in "
                    "dataset or another registration); choose another name")
    if owner is not None and owner.description_file != dataset.description_file:
        raise _fail(dataset.description_file,
                    f"the dataset name {dataset.name!r} is already described by "
                    f"{owner.description_file}; choose another name")
    # Compared ignoring case: vis/<benchmark>/ folders that differ in case only are one folder
    # on macOS and Windows disks.
    owners = {short.casefold(): owner for short, owner in
              [*_short_names.items(), *_builtin_benchmarks().items()]}
    for key, short in (("name", dataset.name), ("benchmark", dataset.benchmark)):
        taken = owners.get(short.casefold(), dataset.name)
        if taken != dataset.name:
            raise _fail(dataset.description_file,
                        f"the {key} {short!r} is already the short name of dataset {taken!r} "
                        f"(results tables and BENCHMARKS use it); choose another {key}")


def register_folder_dataset(path: str) -> List[str]:
    """Register the split(s) described by ``path`` in ``DatasetCatalog`` / ``MetadataCatalog``;
    returns their dataset names. Lazy: the folders are listed when the dataset is loaded.

    Metadata: ``stuff_classes``, ``ignore_label``, ``evaluator_type = "sem_seg"``,
    ``image_root``, ``sem_seg_root``, ``benchmark``, ``label_offset``, ``description_file``
    and ``split`` (when given). Registering the same file again re-reads it; a name or
    benchmark that another file or a built-in dataset already uses raises
    :class:`FolderDatasetError`.
    """
    datasets = read_folder_dataset_description(path)
    for dataset in datasets:
        _check_names_free(dataset)
    for dataset in datasets:
        if dataset.name in _registered:
            previous = _registered.pop(dataset.name)
            for short in (previous.name, previous.benchmark):
                _short_names.pop(short, None)
            DatasetCatalog.remove(dataset.name)
            MetadataCatalog.remove(dataset.name)
        DatasetCatalog.register(dataset.name, lambda d=dataset: load_folder_dataset(d))
        extra = {"split": dataset.split} if dataset.split else {}
        MetadataCatalog.get(dataset.name).set(
            stuff_classes=list(dataset.class_names),
            ignore_label=dataset.ignore_label,
            evaluator_type="sem_seg",
            image_root=dataset.image_dir,
            sem_seg_root=dataset.label_dir,
            benchmark=dataset.benchmark,
            label_offset=dataset.label_offset,
            description_file=dataset.description_file,
            **extra,
        )
        _registered[dataset.name] = dataset
        _short_names[dataset.name] = _short_names[dataset.benchmark] = dataset.name
    return [dataset.name for dataset in datasets]


def register_folder_datasets(paths: Iterable[str]) -> List[str]:
    """:func:`register_folder_dataset` of every path; returns all registered dataset names."""
    return [name for path in paths for name in register_folder_dataset(path)]


def config_folder_dataset_paths(cfg) -> List[str]:
    """The absolute paths of ``cfg.DATASETS.FOLDER_DATASETS``: a relative path is the current
    folder's, else the repository's (the shipped ``configs/datasets/...``:
    :func:`cat_seg.utils.paths.resolve_repo_path`)."""
    return [os.path.abspath(resolve_repo_path(os.path.expanduser(p)))
            for p in cfg.DATASETS.FOLDER_DATASETS]


def register_config_folder_datasets(cfg):
    """Register the descriptions named in ``cfg.DATASETS.FOLDER_DATASETS`` and return ``cfg``
    with those paths absolute (:func:`config_folder_dataset_paths`), so a config saved with a
    run finds them from any folder. ``cfg`` itself is not changed."""
    paths = config_folder_dataset_paths(cfg)
    register_folder_datasets(paths)
    if list(cfg.DATASETS.FOLDER_DATASETS) == paths:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.FOLDER_DATASETS = paths
    cfg.freeze()
    return cfg


def folder_benchmark_datasets() -> Dict[str, str]:
    """Short names of the registered folder datasets -> their dataset names; a dataset's own
    name is accepted as its short name too (``eval_ahs.sh`` ``BENCHMARKS=<name>``)."""
    return dict(_short_names)


# ------------------------------------------------------------------------ the check

@dataclass
class FolderDatasetReport:
    """What :func:`check_folder_dataset` found: ``problems`` (each names its file; any problem
    makes the dataset unusable), ``warnings`` (usable, but probably not what was meant) and a
    summary line per split."""

    description_file: str
    problems: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    summaries: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, max_problems: int = 50) -> str:
        """The report as text: the summaries, then up to ``max_problems`` problems (the rest
        counted) and the warnings."""
        lines = [f"dataset description {self.description_file}"]
        lines += [f"  {summary}" for summary in self.summaries]
        for title, items in (("PROBLEM", self.problems), ("warning", self.warnings)):
            lines += [f"  {title}: {item}" for item in items[:max_problems]]
            if len(items) > max_problems:
                lines.append(f"  ... and {len(items) - max_problems} more {title.lower()}s")
        verdict = ("OK: ready for training and evaluation" if self.ok else
                   f"FAILED: {len(self.problems)} problem(s); fix them and run the check again")
        lines.append(f"  {verdict}")
        return "\n".join(lines)


def _check_pair(dataset: FolderDataset, image_path: str, label_path: str
                ) -> Tuple[List[str], Optional[np.ndarray]]:
    """(problems of one image/label pair, pixel counts per class of its label or None)."""
    problems = []
    image_size = None
    try:
        with Image.open(image_path) as img:
            img.load()  # decodes every pixel: a truncated file fails here
            image_size = (img.height, img.width)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        problems.append(f"unreadable image {image_path}: {error} (corrupt, truncated or not an "
                        "image: replace or remove it)")
    try:
        raw = read_label(label_path)
    except (ValueError, OSError) as error:
        problems.append(f"unreadable label {label_path}: {error}")
        return problems, None
    if image_size is not None and raw.shape != image_size:
        problems.append(f"size mismatch: label {label_path} is {raw.shape[0]}x{raw.shape[1]} "
                        f"but its image {image_path} is {image_size[0]}x{image_size[1]}")
    # On the file's values, as apply_label_offset reads them; unlike it, a value that the
    # offset would turn into the ignore value (ignore + offset) counts as no class here.
    offset, k = dataset.label_offset, len(dataset.class_names)
    labelled = (raw != dataset.ignore_label) & ~((raw >= 0) & (raw < offset))
    bad = labelled & ((raw < offset) | (raw - offset >= k))
    if bad.any():
        values = np.unique(raw[bad]).tolist()
        shown = ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")
        shift = f" minus the offset {offset}" if offset else ""
        problems.append(f"label {label_path} holds values {shown} that are no class: a value"
                        f"{shift} must lie in [0, {k}) ({k} classes) or be the ignore value "
                        f"{dataset.ignore_label}")
        return problems, None
    return problems, np.bincount(raw[labelled] - offset, minlength=k)


def _check_split(dataset: FolderDataset, report: FolderDatasetReport, workers: int) -> None:
    images, labels, problems = _pairs(dataset)
    report.problems += problems
    if not dataset.allow_unlabelled_images:
        for key in sorted(images.keys() - labels.keys()):
            expected = os.path.join(dataset.label_dir, key + dataset.label_suffix)
            report.problems.append(f"image {images[key]} has no label (expected {expected})")
    for key in sorted(labels.keys() - images.keys()):
        report.problems.append(f"label {labels[key]} has no image (expected "
                               f"{os.path.join(dataset.image_dir, key + dataset.image_suffix)})")
    keys = sorted(images.keys() & labels.keys())
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda key: _check_pair(dataset, images[key], labels[key]), keys))
    pixels = np.zeros(len(dataset.class_names), dtype=np.int64)
    empty = []
    for key, (pair_problems, counts) in zip(keys, results):
        report.problems += pair_problems
        if counts is not None:
            pixels += counts
            if not counts.any():
                empty.append(labels[key])
    if empty:
        report.warnings.append(f"{len(empty)} label map(s) of {dataset.name} are all ignore "
                               f"({_listed(empty)}): they add nothing to training or scores")
    absent = [name for name, count in zip(dataset.class_names, pixels) if count == 0]
    if keys and absent and len(absent) < len(dataset.class_names):
        report.warnings.append(f"{len(absent)} of the {len(dataset.class_names)} classes never "
                               f"occur in the labels of {dataset.name} ({_listed(absent)}); "
                               "their IoU will be NaN, outside mIoU")
    offset = f", label_offset {dataset.label_offset}" if dataset.label_offset else ""
    report.summaries.append(
        f"{dataset.name} (benchmark {dataset.benchmark}): {len(keys)} image/label pairs, "
        f"{len(dataset.class_names)} classes, ignore_label {dataset.ignore_label}{offset}; "
        f"images {dataset.image_dir}/*{dataset.image_suffix}, labels "
        f"{dataset.label_dir}/*{dataset.label_suffix}")


def check_folder_dataset(path: str, workers: int = _READERS) -> FolderDatasetReport:
    """Read every image and label of every split that ``path`` describes and report every
    problem: the description itself, absent or empty folders, images without labels and labels
    without images, unreadable or corrupt files, image/label size mismatches, label values that
    are neither a class (after the offset) nor the ignore value. Never raises for bad data."""
    report = FolderDatasetReport(os.path.abspath(os.path.expanduser(str(path))))
    try:
        datasets = read_folder_dataset_description(path)
    except FolderDatasetError as error:
        report.problems.append(str(error))
        return report
    for dataset in datasets:
        _check_split(dataset, report, workers)
    return report
