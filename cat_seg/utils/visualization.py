"""Pictures of segmentations: colour palettes, overlays, side-by-side panels with a legend."""
import logging
import os
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IGNORE_COLOR = (0, 0, 0)


def palette(num_classes: int, seed: int = 0) -> np.ndarray:
    """A fixed, well-spread colour per class: (num_classes, 3) uint8.

    Golden-ratio hue steps keep neighbouring class indices visually distinct for any count
    (847 classes included) and the same index always gets the same colour.
    """
    import colorsys

    hues = (seed * 0.1 + np.arange(num_classes) * 0.61803398875) % 1.0
    sats = 0.55 + 0.35 * ((np.arange(num_classes) * 7) % 3) / 2
    vals = 0.65 + 0.35 * ((np.arange(num_classes) * 5) % 2)
    rgb = [colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hues, sats, vals)]
    return (np.array(rgb) * 255).round().astype(np.uint8)


def colorize(label: np.ndarray, colors: np.ndarray, ignore_label: Optional[int] = None) -> np.ndarray:
    """(H, W) class indices → (H, W, 3) uint8; the ignore label (or any value outside the
    palette) is drawn black."""
    valid = (label >= 0) & (label < len(colors))
    if ignore_label is not None:
        valid &= label != ignore_label
    out = np.zeros(label.shape + (3,), dtype=np.uint8)
    out[valid] = colors[label[valid]]
    return out


def overlay(image: np.ndarray, label: np.ndarray, colors: np.ndarray, alpha: float = 0.5,
            ignore_label: Optional[int] = None) -> np.ndarray:
    """Blend the colourised label over an RGB uint8 image: ``(1-α)·image + α·colour``."""
    color = colorize(label, colors, ignore_label).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * color
    return blended.clip(0, 255).astype(np.uint8)


# Fonts tried for legends, in order: DejaVu Sans (Latin, Greek, Cyrillic, many symbols) from
# matplotlib's bundled fonts (a dependency), then the usual system places, then Noto CJK for
# Chinese/Japanese/Korean names when the system has it.
_SYSTEM_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                 "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                 "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                 "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc")
_warned: set = set()


def _warn_once(key, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logging.getLogger(__name__).warning(message)


@lru_cache(maxsize=None)
def font_files() -> Tuple[str, ...]:
    """The TrueType files found for legends (see ``_SYSTEM_FONTS``), best first."""
    found = []
    try:
        import matplotlib

        found.append(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"))
    except ImportError:
        pass
    found += _SYSTEM_FONTS
    return tuple(dict.fromkeys(p for p in found if os.path.isfile(p)))


@lru_cache(maxsize=None)
def _covered(path: str) -> frozenset:
    """Code points the font file has glyphs for (empty when fontTools cannot read it)."""
    try:
        from fontTools.ttLib import TTCollection, TTFont

        fonts = TTCollection(path).fonts if path.endswith(".ttc") else [TTFont(path, lazy=True)]
        return frozenset(c for f in fonts[:1] for c in f.getBestCmap())
    except Exception:  # noqa: BLE001 - no coverage information: assume nothing
        return frozenset()


def legend_font(size: int, texts: Sequence[str] = ()):
    """A font of ``size`` pixels that draws every character of ``texts``: the first file of
    :func:`font_files` covering them all, else the one covering most, with a warning naming
    the characters drawn as boxes; Pillow's default font (ASCII) when no file is found."""
    needed = {ord(c) for text in texts for c in text if not c.isspace()}
    best, missing = None, needed
    for path in font_files():
        lacking = needed - _covered(path)
        if best is None or len(lacking) < len(missing):
            best, missing = path, lacking
        if not lacking:
            break
    if best is None:
        non_ascii = sorted(c for c in needed if c > 127)
        if non_ascii:
            _warn_once(("no font",), "no TrueType font found (install matplotlib, or the "
                       "fonts-dejavu package): legend names with non-ASCII characters "
                       f"({''.join(map(chr, non_ascii[:20]))}) may be drawn as boxes")
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has no sized default font
            return ImageFont.load_default()
    if missing:
        _warn_once(("missing", best, frozenset(missing)),
                   f"legend font {best} has no glyph for {''.join(map(chr, sorted(missing)[:20]))}; "
                   "those characters are drawn as boxes (install a font covering them, e.g. the "
                   "fonts-noto-cjk package for Chinese/Japanese/Korean names)")
    return ImageFont.truetype(best, size)


def _font(size: int, texts: Sequence[str] = ()):
    return legend_font(size, texts)


def draw_legend(class_ids: Sequence[int], class_names: Sequence[str], colors: np.ndarray,
                width: int, row_height: int = 18) -> Image.Image:
    """A white strip listing ``class_ids`` as colour swatch + name, wrapped into columns."""
    shown = {c: class_names[c].split(",")[0][:28] for c in class_ids}
    font = _font(row_height - 4, list(shown.values()))
    col_width = 200
    cols = max(1, width // col_width)
    rows = max(1, -(-len(class_ids) // cols))
    legend = Image.new("RGB", (width, rows * row_height + 4), "white")
    draw = ImageDraw.Draw(legend)
    for i, c in enumerate(class_ids):
        x, y = (i % cols) * col_width + 4, (i // cols) * row_height + 2
        draw.rectangle([x, y + 2, x + row_height - 4, y + row_height - 2],
                       fill=tuple(int(v) for v in colors[c]), outline="black")
        draw.text((x + row_height, y), shown[c], fill="black", font=font)
    return legend


def legend_classes(labels: List[np.ndarray], num_classes: int) -> List[int]:
    """Sorted class indices present in any of ``labels`` (values outside [0, num_classes) are
    ignore/void and left out)."""
    present = set()
    for label in labels:
        values = np.unique(label)
        present.update(int(v) for v in values if 0 <= v < num_classes)
    return sorted(present)


def comparison_panel(image: np.ndarray, prediction: np.ndarray, class_names: Sequence[str],
                     ground_truth: Optional[np.ndarray] = None,
                     ignore_label: Optional[int] = None) -> Image.Image:
    """image | ground truth | prediction (ground truth optional), with a legend of the classes
    that appear in either map. All maps are (H, W) class indices aligned with ``image``."""
    colors = palette(len(class_names))
    tiles = [image]
    maps = [prediction] if ground_truth is None else [ground_truth, prediction]
    tiles += [overlay(image, m, colors, alpha=0.7, ignore_label=ignore_label) for m in maps]
    strip = np.concatenate(tiles, axis=1)
    return _with_legend(strip, legend_classes(maps, len(class_names)), class_names, colors)


def labelled_overlay(image: np.ndarray, label: np.ndarray, class_names: Sequence[str],
                     alpha: float = 0.5, ignore_label: Optional[int] = None) -> Image.Image:
    """``label`` (H, W) blended over ``image`` (H, W, 3) with a legend of the classes present
    below it: an (H + legend height, W) picture; colours are ``palette(len(class_names))``."""
    colors = palette(len(class_names))
    blended = overlay(image, label, colors, alpha=alpha, ignore_label=ignore_label)
    return _with_legend(blended, legend_classes([label], len(class_names)), class_names, colors)


def _with_legend(strip: np.ndarray, class_ids: Sequence[int], class_names: Sequence[str],
                 colors: np.ndarray) -> Image.Image:
    """``strip`` (H, W, 3) with :func:`draw_legend` of ``class_ids`` pasted below it."""
    legend = draw_legend(class_ids, class_names, colors, width=strip.shape[1])
    panel = Image.new("RGB", (strip.shape[1], strip.shape[0] + legend.height), "white")
    panel.paste(Image.fromarray(strip), (0, 0))
    panel.paste(legend, (0, strip.shape[0]))
    return panel
