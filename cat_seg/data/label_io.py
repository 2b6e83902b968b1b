"""Reading images and label maps exactly, with errors that say what is wrong.

Labels are class indices, never colours: 8-bit PNGs ("L"/"P" mode) and 16-bit PNG/TIFF files
("I;16" and friends, as ADE20K-847 ships them) are read without any conversion, so a value of
65535 stays 65535.
"""
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# PIL modes that hold one integer per pixel.
_INTEGER_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def read_label(path) -> np.ndarray:
    """Read a label map as an int64 array of shape (H, W).

    Raises ``FileNotFoundError`` when the file is absent and ``ValueError`` when it is not a
    single-channel integer image (e.g. a colour-coded PNG that still needs conversion).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"label file {path} does not exist; check the dataset root ($DETECTRON2_DATASETS) "
            "or re-run the dataset's prepare script under datasets/"
        )
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in _INTEGER_MODES:
                raise ValueError(
                    f"label file {path} has image mode {mode!r}; expected a single-channel "
                    "integer map (8-bit or 16-bit). Colour-coded labels must be converted with "
                    "the dataset's prepare script first"
                )
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"label file {path} is corrupt or truncated ({e}); re-create it") from e
    return array.astype(np.int64)


# Record field of datasets whose label files store class c as c + offset (folder datasets,
# cat_seg/data/folder_dataset.py); absent: the files store class indices as they are.
LABEL_OFFSET_KEY = "label_offset"


def apply_label_offset(label: np.ndarray, offset: int, ignore_label: int) -> np.ndarray:
    """Class indices of a label map whose files store class c as c + ``offset``.

    (H, W) int64 -> (H, W) int64: ``ignore_label`` stays, values in [0, ``offset``) (e.g. 0 =
    "unlabelled" with offset 1) become ``ignore_label``, every other value v becomes v - offset
    (a negative one stays negative: the class-range checks of the mapper and the evaluator name
    it). ``offset`` 0 returns ``label`` itself. A file value of ``ignore_label + offset`` turns
    into ``ignore_label``; the data check (``check_folder_dataset``) reports such values.
    """
    if offset == 0:
        return label
    ignored = (label == ignore_label) | ((label >= 0) & (label < offset))
    return np.where(ignored, ignore_label, label - offset)


def read_record_label(record: dict, ignore_label: int) -> np.ndarray:
    """The (H, W) int64 class-index map of a dataset record (``sem_seg_file_name``), with the
    record's ``label_offset`` applied when it has one (:func:`apply_label_offset`)."""
    label = read_label(record["sem_seg_file_name"])
    return apply_label_offset(label, int(record.get(LABEL_OFFSET_KEY, 0)), ignore_label)


def read_image_rgb(path) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3), whatever its stored mode.

    Grayscale is replicated to three channels, alpha is dropped, 16-bit images are rescaled to
    8 bits (by their full 16-bit range, so the conversion does not depend on the content).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                array = np.asarray(img).astype(np.float64)
                scale = 65535.0 if img.mode.startswith("I;16") else max(float(array.max()), 1.0)
                array = np.clip(array / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(array[:, :, None], 3, axis=2)
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(
            f"image file {path} is corrupt, truncated or not an image ({e}); "
            "replace it or remove it from the dataset"
        ) from e
