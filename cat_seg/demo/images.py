"""Segment image files into any class names: what tools/demo.py and tools/web_demo.py run.

Vocabulary checks (``--vocabulary`` / ``--vocabulary-file``), input images (files, folders,
globs; EXIF orientation), the config and model of a :class:`cat_seg.predictor.Segmenter` (the one
inference path: the demos segment with it, the evaluation runs the same model path) and the
pictures written per image (:func:`write_outputs`: overlay with a legend, label map, probability
maps). tools/demo.py's docstring describes the files. Nothing here prints: messages go to the
``logging`` logger ``cat_seg.demo.images`` or back to the caller.
"""
import functools
import glob
import json
import logging
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..inference.image_inputs import decompression_bomb_message, read_upright
from ..utils.visualization import labelled_overlay

log = logging.getLogger(__name__)

# Longest image side the demos segment at by default (--max-side; 0: no limit).
DEFAULT_MAX_SIDE = 1600

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# ---------------------------------------------------------------------------------- vocabulary

def _prompt_name(name: str) -> str:
    """The words a class is prompted and shown with: its first synonym, lower-cased, whitespace
    collapsed."""
    return " ".join(name.split(",")[0].split()).lower()


def check_vocabulary(names: Sequence[str], source: str) -> List[str]:
    """``names`` with whitespace collapsed, or ``ValueError`` naming the empty entries of
    ``source``, those with control characters, and the same name given twice (ignoring case and
    spacing). Different names with the same first synonym (A-847's 'pot, flowerpot' and 'pot')
    are kept, with a warning logged once."""
    from ..data.folder_dataset import CONTROL_CHARACTERS

    if not names:
        raise ValueError(f"the vocabulary ({source}) is empty; give at least one class name")
    cleaned = [" ".join(str(name).split()) for name in names]
    empty = [i for i, name in enumerate(cleaned) if not _prompt_name(name)]
    if empty:
        raise ValueError(f"the vocabulary ({source}) has empty class names at position(s) "
                         f"{[i + 1 for i in empty]}; remove them (e.g. a doubled or trailing comma)")
    control = [i for i, name in enumerate(cleaned) if CONTROL_CHARACTERS.search(name)]
    if control:
        raise ValueError(f"the vocabulary ({source}) has class names with control characters "
                         f"(NUL, escape, ...) at position(s) {[i + 1 for i in control]}: "
                         f"{[cleaned[i] for i in control][:3]}; remove those characters")
    first_seen: Dict[str, int] = {}
    prompted: Dict[str, int] = {}
    duplicates, shared = [], []
    for i, name in enumerate(cleaned):
        key = ", ".join(" ".join(part.split()) for part in name.lower().split(","))
        prompt = _prompt_name(name)
        if key in first_seen:
            duplicates.append(f"{name!r} (positions {first_seen[key] + 1} and {i + 1})")
        elif prompt in prompted:
            j = prompted[prompt]
            shared.append(f"{cleaned[j]!r} and {name!r} (positions {j + 1} and {i + 1})")
        first_seen.setdefault(key, i)
        prompted.setdefault(prompt, i)
    if duplicates:
        raise ValueError(f"the vocabulary ({source}) names a class twice: {', '.join(duplicates)}; "
                         "each class must appear once")
    if shared:
        # Distinct classes whose first synonym, the words the model is prompted with, is the
        # same (A-847 has ten such pairs): allowed, said once per vocabulary.
        _note_shared_prompts(source, tuple(shared))
    return cleaned


@functools.lru_cache(maxsize=64)
def _note_shared_prompts(source: str, shared: Tuple[str, ...]) -> None:
    log.warning(f"the vocabulary ({source}) has {len(shared)} pair(s) of classes prompted with "
                f"the same first synonym: {', '.join(shared[:3])}"
                + (f" and {len(shared) - 3} more" if len(shared) > 3 else "")
                + "; they score alike and a pixel goes to the first of a pair (put another "
                "synonym first to tell them apart)")


def parse_vocabulary(text: Optional[str] = None, file: Optional[str] = None) -> List[str]:
    """The class names of ``--vocabulary`` (comma-separated) or ``--vocabulary-file`` (a JSON
    list, or any other file one name per line: the class-name files of dataset descriptions)."""
    from ..utils.paths import require_file

    if (text is None) == (file is None):
        raise ValueError("give the classes with exactly one of --vocabulary \"sky, tree, person\" "
                         "or --vocabulary-file classes.json")
    if text is not None:
        return check_vocabulary(text.split(","), f"--vocabulary {text!r}")
    require_file(file, "vocabulary file", 'give a JSON list of class names such as ["sky", '
                 '"tree"], or a text file with one name per line')
    if not file.lower().endswith(".json"):
        from ..data.folder_dataset import class_name_lines

        with open(file, encoding="utf-8") as f:
            return check_vocabulary(class_name_lines(f.read(), f"vocabulary file {file}"),
                                    f"vocabulary file {file}")
    try:
        with open(file, encoding="utf-8") as f:
            names = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"vocabulary file {file} is not valid JSON ({error}); it must hold a "
                         'list of class names, e.g. ["sky", "tree", "person"]') from error
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"vocabulary file {file} must hold a JSON list of strings, e.g. "
                         f'["sky", "tree", "person"]; it holds a {type(names).__name__}'
                         + (" with non-string entries" if isinstance(names, list) else ""))
    return check_vocabulary(names, f"vocabulary file {file}")


# ---------------------------------------------------------------------------------- inputs

def find_images(inputs: Sequence[str]) -> List[str]:
    """Image paths from files, folders (their images, sorted) and glob patterns, in input order,
    each once. Fails naming an input that matches nothing."""
    paths: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item)
                           if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f"folder {item} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        elif os.path.isfile(item):
            found = [item]
        elif glob.has_magic(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not found:
                raise FileNotFoundError(f"pattern {item!r} matches no file")
        else:
            raise FileNotFoundError(f"image {item} does not exist; give image files, folders "
                                    "of images or glob patterns ('photos/*.jpg')")
        paths.extend(found)
    unique = list(dict.fromkeys(os.path.normpath(p) for p in paths))
    if not unique:
        raise FileNotFoundError("no input image given")
    return unique


def check_images(paths: Sequence[str]) -> None:
    """Fail before any model work if an input is not a readable image, naming every bad file."""
    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except Image.DecompressionBombError as error:
            bad.append(decompression_bomb_message(path, error))
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            bad.append(f"{path} ({type(error).__name__}: {error})")
    if bad:
        raise ValueError(f"{len(bad)} input(s) are not readable images:\n  " + "\n  ".join(bad)
                         + "\nreplace or remove them")


def read_demo_image(path: str) -> Tuple[np.ndarray, int]:
    """``(image, orientation)``: the image as uint8 RGB (H, W, 3) turned upright by its EXIF
    orientation tag (PIL ``ImageOps.exif_transpose``, as a photo viewer shows it), and the tag
    (1 = already upright or no tag). Phones store pictures sideways with such a tag; without
    this the demo would segment and draw them sideways. Datasets are read as stored, never through
    this function (their labels match the stored pixels; datasets/README.md, "EXIF orientation").
    The predictor reads paths the same way (:func:`cat_seg.inference.image_inputs.read_upright`).
    """
    image = read_upright(path)
    return image.pixels, image.exif_orientation


# What the demo appends to an image's output name (the longest: its probability folder).
_LONGEST_SUFFIX = "_probabilities"


def output_names(paths: Sequence[str]) -> List[str]:
    """One output name per image: its file stem made a valid file name
    (:func:`cat_seg.utils.file_names.unique_names`: awkward characters replaced, long names cut
    with a hash), with ``_2``, ``_3``... when names repeat (also in another case)."""
    from ..utils.file_names import MAX_NAME_BYTES, unique_names

    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    return unique_names(stems, MAX_NAME_BYTES - len(_LONGEST_SUFFIX), fallback="image")


def _slug(name: str) -> str:
    """A class's first synonym as a file name part: lower case, runs of anything but letters
    (of any script) and digits as ``_``, at most 200 bytes."""
    from ..utils.file_names import safe_name

    slug = re.sub(r"[\W_]+", "_", name.split(",")[0]).strip("_").lower()
    return safe_name(slug, 200, fallback="class") if slug else "class"


def check_inputs_kept(image_paths: Sequence[str], output_dir: str,
                      class_names: Sequence[str] = (), probabilities: bool = False) -> None:
    """``ValueError`` (one line, before any work) when a file the demo would write into
    ``output_dir`` is one of its input images: with ``--output`` the input folder, ``x.png``'s
    overlay ``x_overlay.png`` would replace an input of that name (an earlier run's picture).
    Files are compared as the disk sees them (a link, another case on a case-blind disk)."""
    def key(path):
        try:
            status = os.stat(path)
        except OSError:
            return None  # not there (yet): nothing to overwrite
        return status.st_dev, status.st_ino

    inputs = {key(path): path for path in image_paths}
    folders = {key(os.path.dirname(path) or ".") for path in image_paths}  # those holding inputs
    inputs.pop(None, None)
    folders.discard(None)
    beside_inputs = key(output_dir) in folders
    maps = probability_map_names(class_names) if probabilities else []
    clashes = []
    for path, name in zip(image_paths, output_names(image_paths)):
        written = {}
        if beside_inputs:
            written = {"overlay": os.path.join(output_dir, f"{name}_overlay.png"),
                       "label map": os.path.join(output_dir, f"{name}_labels.png")}
        maps_dir = os.path.join(output_dir, f"{name}_probabilities")
        if maps and key(maps_dir) in folders:
            written.update((f"probability map {file}", os.path.join(maps_dir, file))
                           for file in maps)
        for kind, output in written.items():
            clash = inputs.get(key(output))
            if clash is not None:
                clashes.append(f"{clash} (it would become {path}'s {kind})")
    if clashes:
        raise ValueError(f"the output folder {output_dir} holds input images the demo would "
                         f"overwrite: {', '.join(clashes[:3])}"
                         + (f" and {len(clashes) - 3} more" if len(clashes) > 3 else "")
                         + "; choose another output folder (--output)")


# ---------------------------------------------------------------------------------- outputs

def save_label_map(label: np.ndarray, num_classes: int, path: str) -> np.dtype:
    """Write (H, W) class indices losslessly: 8-bit PNG below 256 classes, else 16-bit; an
    unlabelled pixel (:data:`cat_seg.predictor.UNLABELLED`, no class present) is written as the
    type's largest value (255 / 65535), which no class index reaches."""
    dtype = np.uint8 if num_classes < 256 else np.uint16
    if num_classes > np.iinfo(np.uint16).max:
        raise ValueError(f"{num_classes} classes do not fit a 16-bit label PNG (at most "
                         f"{np.iinfo(np.uint16).max}, one value is kept for unlabelled pixels)")
    Image.fromarray(np.where(label < 0, np.iinfo(dtype).max, label).astype(dtype)).save(path)
    return dtype


def unlabelled_value(num_classes: int) -> int:
    """The label PNG's value of unlabelled pixels (:func:`save_label_map`)."""
    return int(np.iinfo(np.uint8 if num_classes < 256 else np.uint16).max)


def probability_map_names(class_names: Sequence[str]) -> List[str]:
    """File names of the per-class score maps: ``<index>_<class slug>.png``."""
    width = len(str(len(class_names) - 1))
    return [f"{index:0{width}d}_{_slug(name)}.png" for index, name in enumerate(class_names)]


def score_to_uint8(score: np.ndarray) -> np.ndarray:
    """(H, W) scores in [0, 1] -> uint8 round(255·score), as the probability maps store them."""
    return np.round(np.clip(score, 0, 1) * 255).astype(np.uint8)


def save_probability_maps(result, folder: str) -> List[str]:
    """One grayscale PNG per class of ``result`` (:class:`cat_seg.predictor.SegmentationResult`):
    round(255·score). Computed one class at a time: never (T, H, W) at once."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for index, file_name in enumerate(probability_map_names(result.class_names)):
        path = os.path.join(folder, file_name)
        Image.fromarray(score_to_uint8(result.class_scores(index))).save(path)
        paths.append(path)
    return paths


def write_outputs(image: np.ndarray, result, output_dir: str, name: str,
                  probabilities: bool = False, alpha: float = 0.5) -> dict:
    """Save one image's pictures from its :class:`cat_seg.predictor.SegmentationResult`.

    Returns ``{"overlay", "labels", "probabilities" (list, may be empty), "classes" (legend class
    indices, sorted), "fractions" ({class index: pixel fraction})}``.
    """
    label = result.labels
    if label.shape != image.shape[:2]:
        raise ValueError(f"label map {label.shape} does not match the image size "
                         f"{image.shape[:2]}")
    class_names = result.class_names
    overlay_path = os.path.join(output_dir, f"{name}_overlay.png")
    labelled_overlay(image, label, class_names, alpha=alpha).save(overlay_path)
    labels_path = os.path.join(output_dir, f"{name}_labels.png")
    save_label_map(label, len(class_names), labels_path)
    prob_paths = []
    if probabilities:
        prob_paths = save_probability_maps(result, os.path.join(output_dir,
                                                                f"{name}_probabilities"))
    fractions = class_fractions(label)
    return {"overlay": overlay_path, "labels": labels_path, "probabilities": prob_paths,
            "classes": sorted(fractions), "fractions": fractions}


def class_fractions(label: np.ndarray) -> Dict[int, float]:
    """{class index: fraction of the pixels of ``label`` (H, W)} for the classes present
    (unlabelled pixels count in the total only)."""
    from ..predictor import class_fractions as fractions

    return fractions(label)


def downscale(image: np.ndarray, max_side: int) -> Tuple[np.ndarray, Optional[str]]:
    """``image`` (H, W, 3) shrunk (aspect kept) so its longer side is at most ``max_side`` (0:
    unchanged), and a note saying so (else None): ``--max-side`` of both demos.

    The model resizes to its test size anyway; this bounds the cost of the label map, the
    pictures and (in the browser) sending a huge photo back.
    """
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image, None
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=3.0))
    return small, (f"The image is {width}×{height} px; it was downscaled to {size[0]}×{size[1]} "
                   f"(--max-side {max_side}) for the model and the pictures.")


def check_max_side(max_side: int) -> int:
    if max_side != 0 and max_side < 32:
        raise ValueError(f"--max-side {max_side}: give at least 32 pixels, or 0 to keep the "
                         "image's size")
    return max_side


def vocabulary_note(class_names: Sequence[str]) -> Optional[str]:
    """A note for a vocabulary so long that the model's memory is dominated by it, else None."""
    from ..predictor import LARGE_VOCABULARY

    if len(class_names) < LARGE_VOCABULARY:
        return None
    return (f"{len(class_names)} class names: every pixel is compared with every name (CAT-Seg's "
            "class aggregation needs them all), so memory and time grow with the number of "
            "names; the text encoder, the head and the label map take them about a thousand at a "
            "time and the sliding window's views go through the model one at a time, so memory "
            "grows by such chunks, not all at once. If memory runs out, split the names into "
            "several runs.")


# ---------------------------------------------------------------------------------- model

def setup_cfg(config_file: str, opts: Sequence[str] = (), device: Optional[str] = None,
              weights: Optional[str] = None, allow_unexpected_weights: bool = False,
              sha256: Optional[str] = None):
    """The frozen config of the demos and the predictor: file, then the evaluation's test
    protocol (sliding window, pooling [1, 1]), then ``opts``, then ``device`` / ``weights``;
    "auto" resolved. ``config_file`` and ``weights`` are found from the current folder first,
    then from the repository (``configs/...`` works from any folder); ``weights`` may also be an
    http(s) URL or ``hf://owner/name/file``, downloaded once into the cache (checked against
    ``sha256`` when given) and, for an official CAT-Seg checkpoint, converted there
    (:func:`cat_seg.engine.catseg_checkpoint.fetch_ahs_weights`). The datasets the config
    describes by files (DATASETS.FOLDER_DATASETS) are registered, as training and evaluation do:
    a model trained on one builds from its class names (HPA's prototypes), and the returned
    config names those files by absolute path."""
    from .. import build_config
    from ..data.folder_dataset import register_config_folder_datasets
    from ..engine.benchmarks import TEST_PROTOCOL
    from ..utils.download import source_url
    from ..utils.paths import resolve_repo_path

    if weights and source_url(os.fspath(weights)):
        from ..engine.catseg_checkpoint import fetch_ahs_weights

        weights = fetch_ahs_weights(os.fspath(weights), sha256)

    config_file = resolve_repo_path(os.fspath(config_file))
    from ..config import CONFIG_FILE_FIX
    from ..utils.paths import require_file

    require_file(config_file, "config file", CONFIG_FILE_FIX)
    overrides = list(TEST_PROTOCOL) + list(opts)
    if device:
        overrides += ["MODEL.DEVICE", device]
    if weights:
        overrides += ["MODEL.WEIGHTS", resolve_repo_path(os.fspath(weights))]
    if allow_unexpected_weights:
        overrides += ["MODEL.ALLOW_UNEXPECTED_WEIGHTS", "True"]
    return register_config_folder_datasets(build_config(config_file, overrides))


def check_weights_file(path: str) -> str:
    """The weights file ``path`` (found from the current folder, then the repository); raises
    ``ValueError`` for none, ``OSError`` (one line, with the fix) when it is absent or a folder."""
    from ..utils.paths import require_file, resolve_repo_path

    if not path:
        raise ValueError("no weights given: pass --weights OUTPUT_DIR/model_final.pth (a checkpoint "
                         "train_net.py / run_ahs.sh wrote) or set MODEL.WEIGHTS in the config")
    return require_file(resolve_repo_path(path), "weights file", "train first (run_ahs.sh) or "
                        "pass the path of a checkpoint (OUTPUT_DIR/model_final.pth)")


def load_weights(model: torch.nn.Module, path: str, allow_unexpected: bool = False) -> List[str]:
    """Load a full AHS-Seg checkpoint (as train_net.py writes) into ``model``.

    Reading and fitting are the trainer's (:class:`cat_seg.engine.AtomicCheckpointer`): weights
    only, and a file that is unreadable, or lacks weights of the model or has weights of another
    shape (the checkpoint belongs to another config), stops with an error; so do weights the
    model does not have, unless ``allow_unexpected`` (``--allow-unexpected-weights``): then they
    are dropped and returned (:func:`ignored_weights_message` says it in a line). Here
    only a missing path gets the demo's own advice.
    """
    from ..engine import AtomicCheckpointer

    path = check_weights_file(path)
    checkpointer = AtomicCheckpointer(model, allow_unexpected=allow_unexpected)
    checkpointer.load(path)
    if checkpointer.ignored_keys:
        # Debug only: the keys go back to the caller, whose message it is (tools/demo.py prints it).
        log.debug(ignored_weights_message(checkpointer.ignored_keys, path))
    return checkpointer.ignored_keys


def ignored_weights_message(keys: Sequence[str], path: str) -> str:
    modules = sorted({key.split(".")[0] for key in keys})
    return (f"--allow-unexpected-weights: {len(keys)} weights of {path} that this config's model "
            f"does not have were ignored ({', '.join(modules)})")


def build_demo_model(cfg) -> Tuple[torch.nn.Module, List[str]]:
    """The model of ``cfg`` with ``cfg.MODEL.WEIGHTS`` loaded, in evaluation mode, and the
    checkpoint keys it ignored (MODEL.ALLOW_UNEXPECTED_WEIGHTS)."""
    from detectron2.modeling import build_model

    from ..config import check_config_paths

    check_weights_file(cfg.MODEL.WEIGHTS)  # before the model is built
    check_config_paths(cfg)
    model = build_model(cfg)
    ignored = load_weights(model, cfg.MODEL.WEIGHTS,
                           allow_unexpected=cfg.MODEL.ALLOW_UNEXPECTED_WEIGHTS)
    return model.eval(), ignored


def run_demo(segmenter, image_paths: Sequence[str], class_names: Sequence[str],
             output_dir: str, probabilities: bool = False, alpha: float = 0.5,
             progress: bool = True, mode: str = "sliding", max_side: int = DEFAULT_MAX_SIDE,
             min_score: Optional[float] = None,
             report: Optional[Callable[[str], None]] = None) -> List[dict]:
    """Segment every image into ``class_names`` with ``segmenter``
    (:class:`cat_seg.predictor.Segmenter`) and write its pictures (see the module doc).

    Images larger than ``max_side`` (0: no limit) are downscaled first; ``min_score`` is the
    predictor's (default :data:`cat_seg.predictor.DEFAULT_MIN_SCORE`). ``report`` receives the
    notes (EXIF orientation applied, downscaling, a very long vocabulary); default: the log.
    Returns per image the record of :func:`write_outputs` plus ``"image"`` (its path),
    ``"exif_orientation"``, ``"seconds"``, ``"size"`` ((H, W) of the pictures),
    ``"unlabelled"`` (fraction of pixels without a class) and ``"top_score"`` (highest score).
    """
    from tqdm import tqdm

    from ..predictor import DEFAULT_MIN_SCORE

    min_score = DEFAULT_MIN_SCORE if min_score is None else min_score
    report = report or log.info
    check_max_side(max_side)
    check_inputs_kept(image_paths, output_dir, class_names, probabilities)
    note = vocabulary_note(class_names)
    if note:
        report(note)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "vocabulary.json"), "w") as f:
        json.dump(list(class_names), f, indent=1)
    results = []
    for path, name in tqdm(list(zip(image_paths, output_names(image_paths))), desc="demo",
                           unit="image", disable=not progress):
        image = read_upright(path)
        pixels, note = downscale(image.pixels, max_side)
        for text in image.notes + ([f"{path}: {note}"] if note else []):
            report(text)
        result = segmenter(pixels, class_names, mode=mode, min_score=min_score)
        record = write_outputs(pixels, result, output_dir, name,
                               probabilities=probabilities, alpha=alpha)
        results.append(dict(record, image=path, exif_orientation=image.exif_orientation,
                            seconds=result.seconds, size=pixels.shape[:2],
                            unlabelled=result.unlabelled_fraction,
                            top_score=float(result.top_scores.max())))
    return results
