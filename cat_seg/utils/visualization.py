"""Pictures of segmentations: colour palettes, overlays, side-by-side panels with a legend."""
import logging
import os
import threading
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IGNORE_COLOR = (0, 0, 0)


# The palette's candidates: sRGB on a grid of PALETTE_LEVELS values per channel, kept where CIELAB
# lightness is in PALETTE_LIGHTNESS (not the legend's white background, not the black of outlines
# and void) and chroma is at least PALETTE_MIN_CHROMA (not the greys of which photos are full).
PALETTE_LEVELS = 32
PALETTE_LIGHTNESS = (25.0, 90.0)
PALETTE_MIN_CHROMA = 25.0
_palette_lock = threading.Lock()
_palette_state: dict = {}


def srgb_to_lab(rgb) -> np.ndarray:
    """CIELAB (D65) of sRGB colours (..., 3) in 0-255: lightness 0-100, a*, b*. Euclidean
    distance in it is the CIE76 colour difference ΔE*ab (about 2.3: just noticeable)."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])  # relative to the D65 white
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def min_color_distance(colors: np.ndarray) -> float:
    """The smallest CIE76 ΔE*ab between two of ``colors`` (N, 3) uint8 (inf for N < 2; 0 when two
    are the same colour)."""
    lab = srgb_to_lab(np.asarray(colors).reshape(-1, 3))
    if len(lab) < 2:
        return float("inf")
    best = np.inf
    for i in range(len(lab) - 1):  # row by row: all N x N at once would not fit 10,000 names
        best = min(best, float(np.sqrt(((lab[i + 1:] - lab[i]) ** 2).sum(-1)).min()))
    return best


def _palette_candidates():
    values = np.linspace(0, 255, PALETTE_LEVELS).round()
    grid = np.stack(np.meshgrid(values, values, values, indexing="ij"), -1).reshape(-1, 3)
    # Rounded: the greedy choice below then ties (and breaks ties by index) the same on every
    # machine, whatever the last bits of its libm's cube roots.
    lab = srgb_to_lab(grid).round(6)
    lightness, chroma = lab[:, 0], np.hypot(lab[:, 1], lab[:, 2])
    keep = ((lightness >= PALETTE_LIGHTNESS[0]) & (lightness <= PALETTE_LIGHTNESS[1])
            & (chroma >= PALETTE_MIN_CHROMA))
    return grid[keep].astype(np.uint8), lab[keep]


def _extend_palette(num_colors: int) -> np.ndarray:
    """The first ``num_colors`` colours of the greedy sequence, extended under the lock."""
    with _palette_lock:
        state = _palette_state
        if not state:
            rgb, lab = _palette_candidates()
            first = int(np.argmax(np.hypot(lab[:, 1], lab[:, 2])))  # the most saturated
            state.update(rgb=rgb, lab=np.ascontiguousarray(lab.T), order=[first],
                         distance=((lab - lab[first]) ** 2).sum(-1))
        rgb, lab, order, distance = state["rgb"], state["lab"], state["order"], state["distance"]
        # Farthest-point order: each colour the candidate farthest (CIELAB) from all chosen
        # before it, so every prefix is spread about as far as any set of its size can be (within
        # a factor 2 of the best minimum distance). In place, channel by channel: 10,000 colours
        # take about a second.
        squared, difference = np.empty_like(distance), np.empty_like(distance)
        while len(order) < min(num_colors, len(rgb)):
            chosen = int(np.argmax(distance))
            order.append(chosen)
            squared.fill(0.0)
            for channel in lab:
                np.subtract(channel, channel[chosen], out=difference)
                np.multiply(difference, difference, out=difference)
                squared += difference
            np.minimum(distance, squared, out=distance)
        colors = rgb[order[:num_colors]]
    if num_colors > len(colors):  # more classes than candidates: distinct, no longer spread
        colors = np.concatenate([colors, _more_colors(colors, num_colors - len(colors))])
    return colors


def _more_colors(taken: np.ndarray, count: int) -> np.ndarray:
    """``count`` sRGB colours none of ``taken`` and each other, in a fixed scattered order."""
    if len(taken) + count > 1 << 24:
        raise ValueError(f"at most {1 << 24} distinct colours exist; asked for "
                         f"{len(taken) + count}")
    codes = np.arange(1 << 24, dtype=np.int64) * 0x9E3779 % (1 << 24)  # a bijection (odd factor)
    used = taken.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    codes = codes[~np.isin(codes, used)][:count]
    return np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], -1).astype(np.uint8)


def palette(num_classes: int) -> np.ndarray:
    """A fixed colour per class, as distinct from one another as the count allows: (num_classes,
    3) uint8.

    Class ``i`` gets colour ``i`` of one sequence (the same whatever the class count), chosen
    greedily in CIELAB among saturated, mid-light colours (not grey, white or black; see
    ``PALETTE_*``): each colour is the one farthest from all before it. No two classes share a
    colour (up to 2**24 classes, every colour there is). The smallest ΔE*ab between two
    (:func:`min_color_distance`) is about 259 for 2 classes, 92 for 6, 39 for 22, 27 for 50, 17
    for 150, 8 for 847, 3 for 10,000 (the former hue-stepped palette: 90 for 2, 55 for 6, 15 for
    22, 4 for 50, 0.6 for 150).
    """
    if num_classes <= 0:
        return np.zeros((0, 3), np.uint8)
    return _extend_palette(num_classes).copy()


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


def region_outlines(label: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) bool: the pixels within ``width`` pixels (4-connected steps) of a pixel of another
    label, on both sides of every boundary (the image's own border is no boundary)."""
    edge = np.zeros(label.shape, bool)
    differs = label[1:] != label[:-1]
    edge[1:] |= differs
    edge[:-1] |= differs
    differs = label[:, 1:] != label[:, :-1]
    edge[:, 1:] |= differs
    edge[:, :-1] |= differs
    for _ in range(width - 1):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge


def outline_width(height: int, width: int) -> int:
    """Pixels of a region's outline in :func:`labelled_overlay`: 1 below 450 px (the longer
    side), then 1 per 300 px."""
    return max(1, round(max(height, width) / 300))


def labelled_overlay(image: np.ndarray, label: np.ndarray, class_names: Sequence[str],
                     alpha: float = 0.5, ignore_label: Optional[int] = None) -> Image.Image:
    """``label`` (H, W) drawn over ``image`` (H, W, 3) with a legend of the classes present below
    it: an (H + legend height, W) picture; colours are ``palette(len(class_names))``.

    A class's pixels are its colour blended over the photo (``(1-α)·image + α·colour``) inside an
    opaque outline of the same colour (:func:`outline_width` pixels along its boundaries), so
    every region can be told from the photo and matched to its legend swatch at any opacity, 0
    included. Pixels of no class (negative, ``ignore_label``, or beyond the names) show the photo
    unchanged.
    """
    colors = palette(len(class_names))
    image = np.asarray(image, np.uint8)
    label = np.asarray(label)
    labelled = (label >= 0) & (label < len(class_names))
    if ignore_label is not None:
        labelled &= label != ignore_label
    picture = overlay(image, label, colors, alpha=alpha, ignore_label=ignore_label)
    picture[~labelled] = image[~labelled]
    regions = np.where(labelled, label, -1).astype(np.int32)  # a 12-megapixel photo: 48 MB
    edge = region_outlines(regions, outline_width(*label.shape[:2])) & labelled
    picture[edge] = colors[regions[edge]]
    return _with_legend(picture, legend_classes([regions], len(class_names)), class_names, colors)


def _with_legend(strip: np.ndarray, class_ids: Sequence[int], class_names: Sequence[str],
                 colors: np.ndarray) -> Image.Image:
    """``strip`` (H, W, 3) with :func:`draw_legend` of ``class_ids`` pasted below it."""
    legend = draw_legend(class_ids, class_names, colors, width=strip.shape[1])
    panel = Image.new("RGB", (strip.shape[1], strip.shape[0] + legend.height), "white")
    panel.paste(Image.fromarray(strip), (0, 0))
    panel.paste(legend, (0, strip.shape[0]))
    return panel
