#!/usr/bin/env python
"""ADE20K full (ADE20K_2021_17_01) -> 847-class uint16 TIFF labels (A-847 validation).

Input (official download, under the dataset root):
    ADE20K_2021_17_01/index_ade20k.pkl        index: 'folder' and 'filename' of every image
    <folder>/<name>.jpg, <folder>/<name>_seg.png   (folders as listed in the index, relative to
                                                    the dataset root)
Output:
    ADE20K_2021_17_01/images_detectron2/validation/<name>.jpg
    ADE20K_2021_17_01/annotations_detectron2/validation/<name>.tif   0..846, 65535 = ignore

The index lists training and validation images; validation ones are named ``ADE_val_*``.
The ``_seg.png`` encodes the object class of each pixel in its red and green channels:
``class = (R // 10) * 256 + G``, the 1-based position of the object name in the index's
``objectnames`` (0 = unlabelled). The 847 classes of A-847 (``class_names/ade847.json``) are
the object ids in ``ADE847_OBJECT_IDS``; any other id becomes 65535.

As in CAT-Seg, images whose shorter side exceeds 512 are shrunk to a shorter side of 512 (the
longer side to ``round(long / short * 512)``): images bilinearly, labels by nearest neighbour,
both reproducing OpenCV's ``cv2.INTER_LINEAR`` / ``cv2.INTER_NEAREST`` bit for bit (CAT-Seg
resizes with OpenCV; this script does not need it). Every image is re-encoded as JPEG with
Pillow's default quality (75), as CAT-Seg's images are.
"""
import pickle
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from preparation import (
    check_pair_sizes, checked_root, entry_point,
    Summary, Task, build_parser, count_files, expected_counts, run_tasks, write_jpeg,
    write_tiff_label,
)

OFFICIAL_COUNTS = {"validation": 2000}
IGNORE = 65535
MAX_SHORT_SIDE = 512
JPEG_QUALITY = 75  # Pillow's default, which CAT-Seg's prepared images were saved with
DOWNLOAD = (
    "ADE20K_2021_17_01.zip from https://groups.csail.mit.edu/vision/datasets/ADE20K/ (free "
    "registration), unzipped into the dataset root"
)

# ADE20K object id (``(R // 10) * 256 + G`` in the _seg.png) of each A-847 class, in class order.
ADE847_OBJECT_IDS = (
    2978, 312, 2420, 2855, 2131, 976, 447, 165, 2377, 838, 350, 1831, 1125, 3055,
    401, 1610, 1910, 2684, 471, 687, 774, 2473, 2264, 1735, 2994, 1564, 1276, 2178,
    2329, 57, 907, 913, 1395, 2138, 2272, 2128, 724, 155, 2053, 2380, 689, 1788,
    3087, 2530, 581, 2388, 2985, 2454, 2096, 137, 294, 212, 2185, 524, 2212, 943,
    1869, 2251, 2793, 2423, 1121, 266, 1948, 1744, 783, 571, 627, 629, 491, 1374,
    223, 3016, 2598, 978, 239, 608, 236, 2531, 2616, 591, 327, 2679, 1451, 181,
    420, 2821, 1023, 855, 2733, 2928, 1240, 77, 1969, 2880, 14, 1936, 2828, 631,
    103, 3144, 308, 1282, 38, 1563, 29, 480, 2569, 247, 187, 778, 2243, 1941,
    2833, 120, 95, 2836, 1087, 868, 1401, 220, 47, 843, 123, 2537, 1927, 2337,
    1702, 64, 249, 642, 1981, 609, 2840, 2586, 1393, 2704, 1304, 146, 1494, 2739,
    389, 1551, 131, 738, 161, 747, 1919, 3109, 2179, 2989, 206, 1930, 1002, 2254,
    1708, 2526, 160, 2901, 2262, 44, 597, 2235, 1260, 682, 2151, 3107, 432, 1098,
    2932, 461, 410, 2046, 533, 1481, 1858, 894, 1322, 1891, 1756, 49, 1272, 1229,
    2850, 1784, 2962, 259, 319, 954, 1974, 1013, 2356, 97, 318, 592, 2885, 1017,
    851, 1407, 1332, 303, 2714, 1924, 1346, 1081, 1583, 2727, 2509, 2123, 602, 202,
    10, 490, 530, 2213, 1884, 2934, 2687, 387, 2668, 982, 2547, 1474, 877, 1391,
    414, 698, 2019, 2422, 3010, 1139, 753, 1747, 2175, 1301, 1033, 1789, 2939, 2730,
    1652, 90, 1349, 2830, 1485, 2370, 2155, 118, 1402, 1957, 3130, 1197, 52, 2688,
    96, 762, 772, 1857, 2315, 1016, 643, 3105, 1849, 791, 349, 6, 3114, 1587,
    1233, 559, 1223, 3049, 1943, 853, 709, 1390, 2748, 2007, 1546, 1513, 2600, 2538,
    1790, 194, 326, 2877, 594, 2036, 1662, 2366, 1754, 418, 2553, 1951, 1963, 918,
    2086, 997, 2731, 704, 1365, 569, 3108, 948, 839, 63, 1305, 378, 2362, 2734,
    2982, 2398, 1119, 382, 1141, 1805, 3102, 2341, 1131, 2316, 2626, 3104, 198, 1896,
    2800, 190, 3131, 1463, 357, 929, 209, 912, 1164, 1509, 2539, 3116, 2615, 1644,
    818, 242, 2217, 2347, 2686, 2300, 572, 789, 358, 2443, 101, 2969, 2692, 606,
    2339, 1533, 2060, 1782, 495, 371, 2707, 889, 3156, 2683, 1499, 1135, 1619, 125,
    2838, 2792, 1695, 746, 1343, 1370, 2858, 145, 2565, 1892, 1103, 286, 170, 3073,
    922, 1655, 1602, 2160, 1151, 2176, 2239, 132, 394, 1424, 607, 700, 116, 1425,
    2676, 141, 2360, 2449, 897, 317, 2228, 2351, 1543, 656, 1088, 373, 2472, 2892,
    1740, 3067, 1367, 188, 79, 1633, 1885, 677, 1779, 1297, 2334, 3027, 2735, 1791,
    2405, 1748, 2983, 3035, 2824, 2168, 385, 2148, 2465, 175, 390, 268, 2722, 2857,
    3088, 2926, 2782, 1378, 1934, 2072, 2889, 944, 1158, 1383, 867, 2145, 1915, 361,
    402, 482, 2761, 300, 1554, 636, 260, 1186, 871, 2859, 2103, 208, 2236, 2012,
    2462, 1462, 2832, 2617, 1024, 1129, 18, 376, 134, 407, 434, 2017, 2717, 2005,
    2993, 1545, 1445, 2831, 1161, 2411, 2949, 1769, 552, 2327, 939, 3013, 1986, 1486,
    2723, 1549, 2649, 1020, 392, 422, 1419, 2099, 2464, 3058, 430, 675, 2941, 2955,
    2355, 840, 32, 2338, 1232, 2834, 2991, 2879, 444, 1657, 2246, 296, 245, 2661,
    1202, 1714, 251, 1095, 1828, 311, 2732, 947, 2115, 2738, 2525, 2194, 634, 740,
    2682, 2020, 1156, 1036, 1295, 1181, 3037, 1614, 736, 893, 2047, 1274, 1361, 3036,
    2606, 2797, 2022, 2876, 2758, 472, 3028, 882, 1189, 743, 3122, 2401, 468, 1061,
    1523, 3059, 2843, 2853, 1529, 214, 3032, 3071, 277, 813, 426, 1039, 727, 1508,
    2490, 2299, 768, 1172, 537, 1847, 1664, 1110, 1014, 662, 121, 227, 2410, 2165,
    2696, 3005, 1231, 635, 292, 2690, 65, 2607, 2574, 1188, 456, 2913, 459, 1955,
    827, 1111, 2412, 2997, 528, 366, 1863, 500, 1001, 1958, 1441, 809, 210, 435,
    718, 1674, 388, 1572, 1584, 1944, 674, 99, 2352, 1019, 1763, 185, 554, 1066,
    2508, 951, 2822, 415, 297, 1914, 2619, 1338, 2505, 955, 2786, 238, 3000, 2763,
    299, 822, 1288, 3101, 2894, 992, 489, 2157, 2309, 1576, 1810, 2964, 2662, 2087,
    1569, 503, 1505, 1468, 1613, 1138, 1256, 2715, 2846, 477, 2576, 108, 2245, 1162,
    2149, 2183, 858, 1324, 1055, 1741, 149, 615, 825, 2143, 304, 283, 2322, 3017,
    2510, 1960, 265, 2282, 2184, 1461, 3113, 2372, 2166, 232, 693, 1945, 3039, 2494,
    1908, 2827, 280, 2950, 1044, 288, 2863, 1342, 2409, 1258, 2249, 2862, 920, 1607,
    2802, 610, 3129, 1108, 2823, 476, 2641, 2788, 2070, 1368, 2903, 699, 2844, 942,
    2663, 457, 2701, 2540, 2231, 2746, 1738, 2350, 2808, 2025, 2541, 2156, 126, 2512,
    831, 2503, 2039, 2774, 886, 919, 2240, 2636, 963, 1218, 1406, 1420, 526, 2639,
    975, 1921, 2305, 1193, 2517, 2809, 1647, 314, 2560, 545, 1345, 775, 603, 1163,
    1641, 1678, 2450, 2915, 42, 2242, 2741, 1143, 862, 1654, 1826, 1689, 3124, 2710,
    152, 549, 360, 1982, 1478, 2203, 2612, 2956, 2681, 437, 2171, 1933, 3110, 1824,
    2803, 234, 764, 177, 817, 3145, 1262, 864, 2359, 2992, 1725, 2667, 2484, 1133,
    1667, 2847, 932, 1392, 2573, 2140, 1046, 264, 2927, 2752, 679, 2493, 1658, 2466,
    1057, 2444, 2093, 2248, 2432, 726, 816, 1171, 2766, 2900, 2313, 488, 2265, 2043,
    332, 1771, 2320, 2646, 1089, 2826, 3148,
)
# Look-up table over every id the two channels can encode (R // 10 <= 25).
LUT = np.full(26 * 256, IGNORE, dtype=np.uint16)
LUT[list(ADE847_OBJECT_IDS)] = np.arange(len(ADE847_OBJECT_IDS), dtype=np.uint16)


def object_ids(seg_rgb: np.ndarray) -> np.ndarray:
    """(H, W) ADE20K object ids from a ``_seg.png`` (H, W, 3+) uint8 array."""
    if seg_rgb.ndim != 3 or seg_rgb.shape[2] < 3 or seg_rgb.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit RGB segmentation, got {seg_rgb.dtype} {seg_rgb.shape}")
    red = seg_rgb[:, :, 0].astype(np.int64)
    green = seg_rgb[:, :, 1].astype(np.int64)
    return (red // 10) * 256 + green


def resized_shape(height: int, width: int) -> tuple:
    """CAT-Seg's rule: a shorter side over 512 becomes 512 (Python ``round`` for the other)."""
    if width >= height > MAX_SHORT_SIDE:
        return MAX_SHORT_SIDE, round(width / float(height) * MAX_SHORT_SIDE)
    if height >= width > MAX_SHORT_SIDE:
        return round(height / float(width) * MAX_SHORT_SIDE), MAX_SHORT_SIDE
    return height, width


# OpenCV's INTER_LINEAR on uint8 works in fixed point: weights in 1/2048 units (11 bits), the
# horizontal pass keeps the products, the vertical pass shifts them back with its own rounding.
_COEF_SCALE = 2048


def _linear_taps(src: int, dst: int):
    """OpenCV INTER_LINEAR taps along one axis (half-pixel centres, clamped at the borders).

    Output pixel ``i`` samples ``x = (i + 0.5) * src / dst - 0.5`` (in float32, like OpenCV) and
    returns the two source indices around it with their fixed-point weights (summing to 2048).
    """
    pos = ((np.arange(dst) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.int64)
    frac = pos - first.astype(np.float32)
    frac[first < 0] = 0.0
    frac[first >= src - 1] = 0.0
    first = np.clip(first, 0, src - 1)
    w_first = np.round((np.float32(1.0) - frac) * np.float32(_COEF_SCALE)).astype(np.int32)
    return first, np.minimum(first + 1, src - 1), w_first, _COEF_SCALE - w_first


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) image resized exactly like ``cv2.resize(..., INTER_LINEAR)``.

    Horizontal pass ``h = S[x0]·a0 + S[x1]·a1`` (integers, scale 2^11), then OpenCV's vertical
    rounding ``((b0·(h0 >> 4)) >> 16) + ((b1·(h1 >> 4)) >> 16) + 2) >> 2`` (scale 2^22 -> 1).
    Checked bit for bit against OpenCV 4.10.
    """
    top, bottom, b0, b1 = _linear_taps(image.shape[0], height)
    left, right, a0, a1 = _linear_taps(image.shape[1], width)
    channel_axes = (1,) * (image.ndim - 2)
    a0, a1 = (a.reshape(1, -1, *channel_axes) for a in (a0, a1))
    b0, b1 = (b.reshape(-1, 1, *channel_axes) for b in (b0, b1))
    src = image.astype(np.int32)
    horizontal = src[:, left] * a0 + src[:, right] * a1
    upper, lower = horizontal[top] >> 4, horizontal[bottom] >> 4
    out = (((b0 * upper) >> 16) + ((b1 * lower) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def _nearest_taps(src: int, dst: int) -> np.ndarray:
    # OpenCV's INTER_NEAREST: floor(i * (1 / (dst / src))), not the pixel-centre rule.
    return np.minimum(np.floor(np.arange(dst) * (1.0 / (dst / src))).astype(np.int64), src - 1)


def resize_nearest(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) label map resized like ``cv2.resize(..., INTER_NEAREST)``."""
    return label[_nearest_taps(label.shape[0], height)][:, _nearest_taps(label.shape[1], width)]


def convert(task: Task) -> dict:
    image_path, seg_path = task.sources
    with Image.open(image_path) as img:
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        image = np.asarray(img)
    with Image.open(seg_path) as seg:
        label = LUT[object_ids(np.asarray(seg))]
    if label.shape != image.shape[:2]:
        raise ValueError(
            f"{seg_path} is {label.shape[1]}x{label.shape[0]} but its image is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    height, width = resized_shape(*label.shape)
    resized = (height, width) != label.shape
    if resized:
        image = resize_bilinear(image, height, width)
        label = resize_nearest(label, height, width)
    write_tiff_label(label, task.outputs[1])
    write_jpeg(image, task.outputs[0], JPEG_QUALITY)
    return {"resized to a 512 shorter side": int(resized)}


def load_index(path: Path):
    """(folder, filename) of every image listed in ``index_ade20k.pkl``."""
    with open(path, "rb") as f:
        index = pickle.load(f)
    missing = [k for k in ("folder", "filename") if k not in index]
    if missing:
        raise SystemExit(
            f"{path} has no {missing} entries; it is not the ADE20K_2021_17_01 index "
            f"(get {DOWNLOAD})"
        )
    return list(zip(index["folder"], index["filename"]))


def is_validation(filename: str) -> bool:
    parts = filename.split("_")
    return len(parts) > 1 and parts[1] == "val"


@entry_point("ade20k-847")
def main(argv=None) -> int:
    args = build_parser(__doc__, OFFICIAL_COUNTS).parse_args(argv)
    expected = expected_counts(args, OFFICIAL_COUNTS)
    root = checked_root(args)
    base = root / "ADE20K_2021_17_01"
    index_path = base / "index_ade20k.pkl"
    image_dir = base / "images_detectron2" / "validation"
    label_dir = base / "annotations_detectron2" / "validation"
    summary = Summary("prepare_ade20k_847.py", root)
    if summary.require([index_path], DOWNLOAD):
        entries = [(folder, name) for folder, name in load_index(index_path) if is_validation(name)]
        summary.check_count(
            "validation images in the index", len(entries), expected["validation"], index_path,
            "validation",
        )
        tasks = []
        for folder, name in entries:
            image = root / folder / name
            stem = Path(name).stem
            tasks.append(Task(
                stem,
                (image, image.with_name(f"{stem}_seg.png")),
                (image_dir / f"{stem}.jpg", label_dir / f"{stem}.tif"),
            ))
        stats = run_tasks(tasks, convert, args.workers, args.overwrite, "validation")
        summary.run("validation images + labels", stats)
        outputs = (("labels", label_dir, ".tif"), ("images", image_dir, ".jpg"))
        for label, folder, suffix in outputs:
            summary.check_count(
                f"validation {label}", count_files(folder, suffix), expected["validation"],
                folder, "validation",
            )
        check_pair_sizes(summary, "validation", [t.outputs for t in tasks], args.workers)
    return summary.finish()


if __name__ == "__main__":
    sys.exit(main())
