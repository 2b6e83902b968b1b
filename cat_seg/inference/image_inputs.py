"""What :class:`cat_seg.predictor.Segmenter` accepts as an image, turned into uint8 RGB (H, W, 3).

* a path (``str`` / ``os.PathLike``): read as tools/demo.py reads it, upright by its EXIF
  orientation tag (phones store pictures sideways with such a tag);
* a PIL image: converted to RGB, upright by its EXIF orientation tag like a path;
* a numpy array: uint8 (H, W, 3) RGB, or (H, W) grayscale;
* a torch tensor (3, H, W): uint8 0-255, or floating point 0-1 (torchvision's ``to_tensor``
  convention), rounded to uint8 as the evaluation reads images (8-bit files).

Anything else stops with a message that names what was given and what is accepted.
"""
import os
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = ("a path, a PIL image, a numpy uint8 (H, W, 3) array or a torch (3, H, W) tensor "
            "(uint8 0-255 or float 0-1)")


@dataclass
class RGBImage:
    """An input as the model reads it: ``pixels`` uint8 (H, W, 3) RGB, upright."""
    pixels: np.ndarray
    name: str
    exif_orientation: int = 1
    notes: List[str] = field(default_factory=list)


class ImageTooLarge(ValueError):
    """An image Pillow refuses to decode (a possible decompression bomb); the text says so."""


def decompression_bomb_message(name: str, error: Exception) -> str:
    """One line for an image Pillow refuses to decode as a possible decompression bomb."""
    limit = Image.MAX_IMAGE_PIXELS
    return (f"image {name} is too large to decode safely ({error}); Pillow stops above "
            f"{2 * limit / 1e6:.0f} megapixels (warns above {limit / 1e6:.0f}): downscale it first "
            "(e.g. `convert in.jpg -resize 8000x8000 out.jpg`)")


def _upright(image: Image.Image, name: str) -> RGBImage:
    orientation = int(image.getexif().get(0x0112, 1) or 1)
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    notes = ([f"{name}: EXIF orientation {orientation} applied (the image is segmented upright, "
              "as photo viewers show it)"] if orientation != 1 else [])
    return RGBImage(_pil_rgb(image), name, orientation, notes)


def _pil_rgb(image: Image.Image) -> np.ndarray:
    """RGB uint8 pixels; 16-bit grayscale is rescaled by its full range, as datasets read it."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image).astype(np.float64)
        scale = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        array = np.clip(array / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(array[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def read_upright(path) -> RGBImage:
    """An image file as uint8 RGB, turned upright by its EXIF orientation tag."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        what = "a folder, not an image file" if os.path.isdir(name) else "does not exist"
        raise FileNotFoundError(f"image {name} {what}")
    try:
        with Image.open(name) as image:
            image.load()
            return _upright(image, name)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(decompression_bomb_message(name, error)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"image {name} is corrupt, truncated or not an image ({error}); "
                         "replace it or remove it from the inputs") from None


def to_rgb(image, name: Optional[str] = None) -> RGBImage:
    """Any accepted input (module docstring) -> :class:`RGBImage`."""
    if isinstance(image, (str, os.PathLike)):
        return read_upright(image)
    label = name or f"the {type(image).__name__} input"
    if isinstance(image, Image.Image):
        return _upright(image, name or "the PIL image")
    if isinstance(image, np.ndarray):
        return RGBImage(_array_rgb(image, label), name or "the numpy array")
    if isinstance(image, torch.Tensor):
        return RGBImage(_tensor_rgb(image, label), name or "the tensor")
    raise TypeError(f"cannot segment {label}: give {ACCEPTED}, or a list of them")


def _array_rgb(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise TypeError(f"{label} is a {array.dtype} array; numpy images must be uint8 RGB "
                        "(H, W, 3) (e.g. np.asarray(PIL.Image.open(path).convert('RGB')))")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{label} has shape {array.shape}; numpy images must be (H, W, 3) RGB "
                         "or (H, W) grayscale (drop an alpha channel with array[..., :3])")
    _check_size(array.shape[:2], label)
    return np.ascontiguousarray(array)


def _tensor_rgb(tensor: torch.Tensor, label: str) -> np.ndarray:
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"{label} has shape {tuple(tensor.shape)}; tensors must be (3, H, W) RGB "
                         "(channels first, as torchvision reads images)")
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.uint8:
        pixels = tensor
    elif tensor.is_floating_point():
        low, high = float(tensor.min()), float(tensor.max())
        if low < 0 or high > 1:
            raise ValueError(f"{label} holds values in [{low:g}, {high:g}]; floating-point "
                             "tensors are read as RGB in [0, 1] (torchvision's to_tensor): divide "
                             "0-255 values by 255 or pass a uint8 tensor")
        pixels = (tensor.float() * 255).round().to(torch.uint8)
    else:
        raise TypeError(f"{label} is a {tensor.dtype} tensor; tensors must be uint8 (0-255) or "
                        "floating point (0-1)")
    _check_size(tuple(tensor.shape[1:]), label)
    return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())


def _check_size(size, label: str) -> None:
    if min(size) < 1:
        raise ValueError(f"{label} is empty ({size[0]}x{size[1]} pixels)")
