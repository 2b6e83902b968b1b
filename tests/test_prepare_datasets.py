"""datasets/prepare_*.py on miniature inputs in each official format, checked pixel for pixel.

Every test builds the download's folder layout and file format in a temporary root (tiny PNGs,
an ADE20K-2021-style index pickle with R/G-encoded ``_seg.png`` files, PASCAL-Context ``.mat``
files, VOC ``SegmentationClassAug`` PNGs), runs the script's ``main`` with ``--expect`` set to
the miniature counts, and compares the written labels with hand-computed expectations.
"""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

import prepare_ade20k_150  # noqa: E402
import prepare_ade20k_847  # noqa: E402
import prepare_coco_stuff  # noqa: E402
import prepare_pascal_context  # noqa: E402
import prepare_voc  # noqa: E402

from cat_seg.data.label_io import read_label  # noqa: E402


def _png(path: Path, array, mode=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)


def _jpg(path: Path, height: int, width: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _run(module, root: Path, *extra: str) -> int:
    return module.main(["--root", str(root), "--workers", "1", *extra])


def _label(path: Path) -> np.ndarray:
    return read_label(path)


# ------------------------------------------------------------------------------------ COCO
# stuffthingmaps value (COCO id - 1) -> expected class index, by hand: the 11 unused values
# (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90) are skipped when numbering.
COCO_SOURCE = np.array([[0, 10, 11, 12], [26, 90, 91, 181], [255, 25, 100, 1]])
COCO_EXPECTED = np.array([[0, 10, 255, 11], [24, 255, 80, 170], [255, 255, 89, 1]])


def _coco_inputs(root: Path, split_counts=(("train2017", 1), ("val2017", 2))):
    for split, count in split_counts:
        for i in range(count):
            _png(root / f"coco-stuff/annotations/{split}/{i:012d}.png", np.roll(COCO_SOURCE, i, 1))
            _jpg(root / f"coco-stuff/images/{split}/{i:012d}.jpg", 3, 4)


def test_coco_stuff_labels(tmp_path, capsys):
    _coco_inputs(tmp_path)
    counts = ("--expect", "train2017=1", "--expect", "val2017=2")
    assert _run(prepare_coco_stuff, tmp_path, *counts) == 0
    out = tmp_path / "coco-stuff/annotations_detectron2"
    assert np.array_equal(_label(out / "train2017/000000000000.png"), COCO_EXPECTED)
    assert np.array_equal(_label(out / "val2017/000000000001.png"), np.roll(COCO_EXPECTED, 1, 1))
    summary = capsys.readouterr().out
    line = "val2017 labels: 2 in coco-stuff/annotations_detectron2/val2017 (expected 2) OK"
    assert line in summary
    assert "All checks passed." in summary


def test_coco_class_numbering_matches_the_class_list():
    names = json.loads((REPO / "cat_seg/data/class_names/coco.json").read_text())
    lut = prepare_coco_stuff.label_lut()
    assert sorted(set(lut[:182]) - {255}) == list(range(len(names)))
    assert names[lut[0]] == "person" and names[lut[90 + 1]] == "banner"  # id 92 = first stuff
    assert names[lut[181]] == "wood"


def test_parallel_run_matches_serial_run(tmp_path):
    _coco_inputs(tmp_path / "a", (("val2017", 6),))
    _coco_inputs(tmp_path / "b", (("val2017", 6),))
    args = ("--splits", "val2017", "--expect", "val2017=6")
    assert _run(prepare_coco_stuff, tmp_path / "a", *args) == 0
    assert prepare_coco_stuff.main(["--root", str(tmp_path / "b"), "--workers", "2", *args]) == 0
    for path in sorted((tmp_path / "a/coco-stuff/annotations_detectron2/val2017").iterdir()):
        other = tmp_path / "b/coco-stuff/annotations_detectron2/val2017" / path.name
        assert np.array_equal(_label(path), _label(other))


def test_resume_skips_done_files_and_overwrite_redoes_them(tmp_path, capsys):
    _coco_inputs(tmp_path, (("val2017", 2),))
    args = ("--splits", "val2017", "--expect", "val2017=2")
    assert _run(prepare_coco_stuff, tmp_path, *args) == 0
    done = tmp_path / "coco-stuff/annotations_detectron2/val2017/000000000000.png"
    _png(done, np.zeros((3, 4)))  # a stand-in to see whether the file gets rewritten
    capsys.readouterr()
    assert _run(prepare_coco_stuff, tmp_path, *args) == 0
    assert "0 written, 2 already done, 0 failed" in capsys.readouterr().out
    assert not _label(done).any()
    assert _run(prepare_coco_stuff, tmp_path, *args, "--overwrite") == 0
    assert "2 written, 0 already done" in capsys.readouterr().out
    assert np.array_equal(_label(done), COCO_EXPECTED)


def test_official_counts_are_checked(tmp_path, capsys):
    _coco_inputs(tmp_path, (("val2017", 2),))
    assert _run(prepare_coco_stuff, tmp_path, "--splits", "val2017") == 1
    summary = capsys.readouterr().out
    line = "val2017 labels: 2 in coco-stuff/annotations_detectron2/val2017 (expected 5000) MISMATCH"
    assert line in summary
    assert "pass --expect val2017=2" in summary


def test_missing_source_folder_names_the_download(tmp_path, capsys):
    _coco_inputs(tmp_path, (("val2017", 1),))
    assert _run(prepare_coco_stuff, tmp_path, "--expect", "val2017=1") == 1
    summary = capsys.readouterr().out
    assert f"missing {tmp_path / 'coco-stuff/annotations/train2017'}" in summary
    assert "stuffthingmaps_trainval2017.zip" in summary
    assert "leave train2017 out of --splits" in summary


def test_bad_expect_argument_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"^\[prepare coco-stuff\] --expect 'val=3': .*KEY=N"):
        _run(prepare_coco_stuff, tmp_path, "--expect", "val=3")


# ------------------------------------------------------------------------------------
def _ade150_inputs(root: Path, labels):
    for i, label in enumerate(labels):
        name = f"ADE_val_{i + 1:08d}"
        _png(root / f"ADEChallengeData2016/annotations/validation/{name}.png", label)
        _jpg(root / f"ADEChallengeData2016/images/validation/{name}.jpg", *np.shape(label))


def test_ade20k_150_labels(tmp_path, capsys):
    source = np.array([[0, 1, 2], [150, 149, 7]])
    _ade150_inputs(tmp_path, [source, source.T])
    assert _run(prepare_ade20k_150, tmp_path, "--expect", "validation=2") == 0
    out = tmp_path / "ADEChallengeData2016/annotations_detectron2/validation"
    expected = np.array([[255, 0, 1], [149, 148, 6]])
    assert np.array_equal(_label(out / "ADE_val_00000001.png"), expected)
    assert np.array_equal(_label(out / "ADE_val_00000002.png"), expected.T)
    assert "All checks passed." in capsys.readouterr().out


def test_values_outside_the_dataset_fail_that_file(tmp_path, capsys):
    _ade150_inputs(tmp_path, [np.array([[1, 2]]), np.array([[151, 3]])])
    assert _run(prepare_ade20k_150, tmp_path, "--expect", "validation=2") == 1
    summary = capsys.readouterr().out
    assert "1 written, 0 already done, 1 failed" in summary
    assert "ADE_val_00000002: ValueError:" in summary and "[151]" in summary


def test_ade20k_150_missing_download(tmp_path, capsys):
    assert _run(prepare_ade20k_150, tmp_path) == 1
    summary = capsys.readouterr().out
    assert f"missing {tmp_path / 'ADEChallengeData2016/annotations/validation'}" in summary
    assert "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip" in summary


# ------------------------------------------------------------------------------------
def _seg_png(object_ids: np.ndarray) -> np.ndarray:
    """ADE20K-2021 ``_seg.png`` pixels: R = (id // 256) * 10 + 3 (any 0..9 offset), G = id % 256."""
    seg = np.zeros((*object_ids.shape, 3), dtype=np.uint8)
    seg[..., 0] = (object_ids // 256) * 10 + 3
    seg[..., 1] = object_ids % 256
    seg[..., 2] = 7  # instance channel, ignored
    return seg


def _ade847_inputs(root: Path, images):
    """images: {filename: (folder relative to root, object id map)}; writes the index pickle."""
    folders, names = [], []
    for name, (folder, ids) in images.items():
        _jpg(root / folder / name, *ids.shape)
        _png(root / folder / name.replace(".jpg", "_seg.png"), _seg_png(ids))
        folders.append(folder)
        names.append(name)
    n = len(names)
    # The fields of the real index_ade20k.pkl (objects x images matrices, per-image lists).
    index = {
        "filename": names,
        "folder": folders,
        "scene": ["/street"] * n,
        "objectnames": ["wall", "building, edifice", "sky"],
        "objectPresence": np.zeros((3, n), dtype=np.uint8),
        "objectIsPart": np.zeros((3, n), dtype=np.uint8),
        "objectcounts": np.zeros(3, dtype=np.int64),
        "proportionClassIsPart": np.zeros(3),
        "wordnet_found": np.zeros(3, dtype=bool),
        "description": {"filename": "image file name", "folder": "folder of the image"},
    }
    (root / "ADE20K_2021_17_01").mkdir(parents=True, exist_ok=True)
    with open(root / "ADE20K_2021_17_01/index_ade20k.pkl", "wb") as f:
        pickle.dump(index, f)


# ADE20K object ids and the A-847 class each becomes (by hand, from ADE847_OBJECT_IDS and
# class_names/ade847.json): 2978 wall -> 0, 312 building -> 1, 2420 sky -> 2; 0 (unlabelled)
# and 1 (not an A-847 class) -> 65535; 1125 grass -> 12.
ADE_IDS = np.array([[2978, 312, 2420], [0, 1, 1125]])
ADE_EXPECTED = np.array([[0, 1, 2], [65535, 65535, 12]])


def test_ade20k_847_labels_and_images(tmp_path, capsys):
    val_folder = "ADE20K_2021_17_01/images/ADE/validation/urban/street"
    _ade847_inputs(tmp_path, {
        "ADE_val_00000001.jpg": (val_folder, ADE_IDS),
        "ADE_val_00000002.jpg": (val_folder, ADE_IDS[::-1]),
        "ADE_train_00000001.jpg": ("ADE20K_2021_17_01/images/ADE/training/urban/street", ADE_IDS),
    })
    assert _run(prepare_ade20k_847, tmp_path, "--expect", "validation=2") == 0
    base = tmp_path / "ADE20K_2021_17_01"
    first = _label(base / "annotations_detectron2/validation/ADE_val_00000001.tif")
    assert np.array_equal(first, ADE_EXPECTED)
    second = _label(base / "annotations_detectron2/validation/ADE_val_00000002.tif")
    assert np.array_equal(second, ADE_EXPECTED[::-1])
    with Image.open(base / "annotations_detectron2/validation/ADE_val_00000001.tif") as img:
        assert img.mode == "I;16"
    with Image.open(base / "images_detectron2/validation/ADE_val_00000001.jpg") as img:
        assert img.size == (3, 2) and img.format == "JPEG"
    assert not (base / "annotations_detectron2/validation/ADE_train_00000001.tif").exists()
    summary = capsys.readouterr().out
    assert "validation images in the index: 2" in summary and "All checks passed." in summary


def test_ade20k_847_ids_match_the_class_list():
    names = json.loads((REPO / "cat_seg/data/class_names/ade847.json").read_text())
    ids = prepare_ade20k_847.ADE847_OBJECT_IDS
    assert len(ids) == len(set(ids)) == len(names) == 847
    assert (names[ids.index(2978)], names[ids.index(312)], names[ids.index(1125)]) == (
        "wall", "building, edifice", "grass")


def test_ade20k_847_large_images_are_shrunk_like_cat_seg(tmp_path):
    # 600 x 520 (H x W): the shorter side 520 > 512 -> W 512, H round(600 / 520 * 512) = 591.
    # Rows alternate wall / sky, so each output row shows which source row nearest-neighbour
    # sampling picked: OpenCV's INTER_NEAREST takes source row floor(i * 600 / 591).
    ids = np.where(np.arange(600)[:, None] % 2 == 0, 2978, 2420) * np.ones((1, 520), dtype=int)
    folder = "ADE20K_2021_17_01/images/ADE/validation/x"
    _ade847_inputs(tmp_path, {"ADE_val_00000001.jpg": (folder, ids)})
    assert _run(prepare_ade20k_847, tmp_path, "--expect", "validation=1") == 0
    base = tmp_path / "ADE20K_2021_17_01"
    label = _label(base / "annotations_detectron2/validation/ADE_val_00000001.tif")
    assert label.shape == (591, 512)
    picked_rows = np.floor(np.arange(591) * (600 / 591)).astype(int)
    assert np.array_equal(label[:, 0], np.where(picked_rows % 2 == 0, 0, 2))
    with Image.open(base / "images_detectron2/validation/ADE_val_00000001.jpg") as img:
        assert img.size == (512, 591)


def test_opencv_style_resampling_by_hand():
    m = prepare_ade20k_847
    assert m.resized_shape(600, 520) == (591, 512)
    assert m.resized_shape(520, 1300) == (512, 1280)
    assert m.resized_shape(512, 4000) == (512, 4000)  # shorter side not above 512: unchanged
    assert m.resized_shape(513, 1025) == (512, 1023)  # Python round: 1022.99... -> 1023
    # Halving: each output pixel is the rounded mean of two neighbours (5.5 rounds up to 6).
    image = np.array([[0, 10, 0, 11]], dtype=np.uint8)
    assert m.resize_bilinear(image, 1, 2).tolist() == [[5, 6]]
    # Nearest: output i takes source floor(i * src / dst): 5 -> 2 picks 0 and 2.
    assert m.resize_nearest(np.arange(5)[None, :], 1, 2).tolist() == [[0, 2]]


def test_ade20k_847_missing_index(tmp_path, capsys):
    assert _run(prepare_ade20k_847, tmp_path) == 1
    summary = capsys.readouterr().out
    assert "index_ade20k.pkl" in summary
    assert "groups.csail.mit.edu/vision/datasets/ADE20K" in summary


# ------------------------------------------------------------------------------ PASCAL-Context
def _context_inputs(root: Path, maps, listed):
    voc = root / "VOCdevkit/VOC2010"
    for image_id, label in maps.items():
        (voc / "trainval").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(voc / "trainval" / f"{image_id}.mat",
                         {"LabelMap": np.asarray(label, dtype=np.uint16)})
        _jpg(voc / "JPEGImages" / f"{image_id}.jpg", *np.shape(label))
    (voc / "ImageSets/Main").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets/Main/val.txt").write_text("".join(f"{i}\n" for i in listed))


# LabelMap -> (PC-59, PC-459) by hand: 0 unlabelled -> (255, 459); 2 aeroplane -> (0, 1);
# 397 table -> (49 "diningtable", 396); 459 wool -> (255, 458); 458 wood -> (58, 457);
# 1 accordion -> (255, 0).
CONTEXT_SOURCE = np.array([[0, 2, 397], [459, 458, 1]])
PC59_EXPECTED = np.array([[255, 0, 49], [255, 58, 255]])
PC459_EXPECTED = np.array([[459, 1, 396], [458, 457, 0]])


def test_pascal_context_labels(tmp_path, capsys):
    maps = {"2008_000002": CONTEXT_SOURCE, "2008_000003": CONTEXT_SOURCE.T,
            "2008_000008": CONTEXT_SOURCE}  # the last one is a training image, not listed
    _context_inputs(tmp_path, maps, listed=["2008_000002", "2008_000003"])
    assert _run(prepare_pascal_context, tmp_path, "--expect", "val=2") == 0
    out = tmp_path / "VOCdevkit/VOC2010/annotations_detectron2"
    assert np.array_equal(_label(out / "pc59_val/2008_000002.png"), PC59_EXPECTED)
    assert np.array_equal(_label(out / "pc459_val/2008_000002.tif"), PC459_EXPECTED)
    assert np.array_equal(_label(out / "pc59_val/2008_000003.png"), PC59_EXPECTED.T)
    assert np.array_equal(_label(out / "pc459_val/2008_000003.tif"), PC459_EXPECTED.T)
    assert not (out / "pc59_val/2008_000008.png").exists()
    summary = capsys.readouterr().out
    assert "2 unlabelled pixels" in summary and "All checks passed." in summary


def test_pc59_ids_name_the_pc59_classes():
    pc59 = json.loads((REPO / "cat_seg/data/class_names/pc59.json").read_text())
    pc459 = json.loads((REPO / "cat_seg/data/class_names/pc459.json").read_text())
    named = [pc459[i - 1] for i in prepare_pascal_context.PC59_CLASS_IDS]
    # PC-59 calls PASCAL-Context's "table" by its VOC name.
    assert named == [("table" if n == "diningtable" else n) for n in pc59]


def test_pascal_context_split_file_and_missing_map(tmp_path, capsys):
    _context_inputs(tmp_path, {"2008_000002": CONTEXT_SOURCE}, listed=["2008_000002"])
    split_file = tmp_path / "pascalcontext_val.txt"
    split_file.write_text("2008_000002\n2008_000099\n")
    assert _run(prepare_pascal_context, tmp_path, "--split-file", str(split_file),
                "--expect", "val=2") == 1
    summary = capsys.readouterr().out
    assert "2008_000099: missing source file(s)" in summary
    assert "PC-59 labels: 1 in" in summary and "(expected 2) MISMATCH" in summary


# ------------------------------------------------------------------------------------ VOC
# Source value -> (PAS-20, PAS-20b) by hand: 0 background -> (255, 20); 1 aeroplane -> (0, 0);
# 20 tvmonitor -> (19, 19); 255 boundary -> (255, 255); 15 person -> (14, 14).
VOC_SOURCE = np.array([[0, 1, 20], [255, 15, 0]])
VOC20_EXPECTED = np.array([[255, 0, 19], [255, 14, 255]])
VOC20B_EXPECTED = np.array([[20, 0, 19], [255, 14, 20]])


def _voc_inputs(root: Path, maps, label_folder="SegmentationClassAug", palette=False):
    voc = root / "VOCdevkit/VOC2012"
    for image_id, label in maps.items():
        path = voc / label_folder / f"{image_id}.png"
        if palette:  # the official SegmentationClass PNGs are palette images
            path.parent.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(np.asarray(label, dtype=np.uint8), "L").convert("P")
            img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
            img.save(path)
        else:
            _png(path, label)
        _jpg(voc / "JPEGImages" / f"{image_id}.jpg", *np.shape(label))
    (voc / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets/Segmentation/val.txt").write_text("".join(f"{i}\n" for i in maps))


def test_voc_labels(tmp_path, capsys):
    _voc_inputs(tmp_path, {"2007_000033": VOC_SOURCE, "2007_000042": VOC_SOURCE[:, ::-1]})
    assert _run(prepare_voc, tmp_path, "--expect", "val=2") == 0
    voc = tmp_path / "VOCdevkit/VOC2012"
    assert np.array_equal(_label(voc / "annotations_detectron2/val/2007_000033.png"),
                          VOC20_EXPECTED)
    assert np.array_equal(_label(voc / "annotations_detectron2_bg/val/2007_000033.png"),
                          VOC20B_EXPECTED)
    assert np.array_equal(_label(voc / "annotations_detectron2/val/2007_000042.png"),
                          VOC20_EXPECTED[:, ::-1])
    summary = capsys.readouterr().out
    assert "source maps: " in summary and "SegmentationClassAug" in summary
    assert "All checks passed." in summary


def test_voc_falls_back_to_the_official_palette_maps(tmp_path):
    _voc_inputs(tmp_path, {"2007_000033": VOC_SOURCE}, label_folder="SegmentationClass",
                palette=True)
    assert _run(prepare_voc, tmp_path, "--expect", "val=1") == 0
    out = tmp_path / "VOCdevkit/VOC2012/annotations_detectron2_bg/val/2007_000033.png"
    assert np.array_equal(_label(out), VOC20B_EXPECTED)


def test_voc_background_only_map_is_kept_for_pas20b_only(tmp_path, capsys):
    _voc_inputs(tmp_path, {"2007_000033": VOC_SOURCE, "2007_000099": np.zeros((2, 2))})
    assert _run(prepare_voc, tmp_path, "--expect", "val=2") == 1  # PAS-20 then has 1 map
    voc = tmp_path / "VOCdevkit/VOC2012"
    assert not (voc / "annotations_detectron2/val/2007_000099.png").exists()
    assert np.array_equal(_label(voc / "annotations_detectron2_bg/val/2007_000099.png"),
                          np.full((2, 2), 20))
    assert "1 maps without a labelled pixel (not written)" in capsys.readouterr().out


def test_script_runs_from_the_command_line(tmp_path):
    _voc_inputs(tmp_path, {"2007_000033": VOC_SOURCE})
    result = subprocess.run(
        [sys.executable, str(REPO / "datasets/prepare_voc.py"), "--root", str(tmp_path),
         "--expect", "val=1", "--workers", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed." in result.stdout


def test_prepared_outputs_load_through_the_registration(tmp_path):
    from detectron2.data import DatasetCatalog
    from cat_seg.data.benchmarks import register_all_benchmarks

    _voc_inputs(tmp_path, {"2007_000033": VOC_SOURCE, "2007_000042": VOC_SOURCE})
    _context_inputs(tmp_path, {"2008_000002": CONTEXT_SOURCE}, listed=["2008_000002"])
    assert _run(prepare_voc, tmp_path, "--expect", "val=2") == 0
    assert _run(prepare_pascal_context, tmp_path, "--expect", "val=1") == 0
    register_all_benchmarks(str(tmp_path))
    try:
        for name, count in (("voc_2012_test_sem_seg", 2), ("voc_2012_test_background_sem_seg", 2),
                            ("context_59_test_sem_seg", 1), ("context_459_test_sem_seg", 1)):
            dicts = DatasetCatalog.get(name)
            assert len(dicts) == count
            assert (dicts[0]["height"], dicts[0]["width"]) == (2, 3)
    finally:
        register_all_benchmarks()


def test_image_and_label_sizes_are_checked_and_differing_pairs_listed(tmp_path, capsys):
    """An evaluation stops at the first image whose label has another size; the prepare script
    finds them all first (shared check in preparation.py, run by every script)."""
    _ade150_inputs(tmp_path, [np.ones((4, 6)), np.ones((5, 7))])
    _jpg(tmp_path / "ADEChallengeData2016/images/validation/ADE_val_00000002.jpg", 7, 5)
    assert _run(prepare_ade20k_150, tmp_path, "--expect", "validation=2") == 1
    summary = capsys.readouterr().out
    assert "All checks passed." not in summary
    assert "1 of 2 image/label pairs differ in size" in summary
    assert "ADE_val_00000002.jpg is 7x5 but its label" in summary
    assert "ADE_val_00000002.png is 5x7" in summary and "ADE_val_00000001.jpg is" not in summary
