"""Datasets of your own (cat_seg/data/folder_dataset.py): the description file, the check command
on broken copies, the label offset, and a tiny folder dataset trained and evaluated through the
command line only."""
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from cat_seg.cli.check_data import main as check_data_main
from cat_seg.data.folder_dataset import (FolderDatasetError, check_folder_dataset,
                                         folder_benchmark_datasets,
                                         read_folder_dataset_description, register_folder_dataset)
from cat_seg.data.label_io import apply_label_offset, read_record_label
from helpers.logs import cat_seg_logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["sky", "grass", "road"]
SIZE = 64


def write_folder_dataset(folder, name="toy", num_train=3, num_val=2, seed=0):
    """A tiny dataset as a user would have it: 64x64 JPEG images, PNG labels storing class c as
    c + 1 (0: unlabelled), a class file, and a description with a train and a val split.

    Each image is three horizontal bands whose colour is its class's, so the labels mean
    something. Returns the description's path."""
    rng = np.random.default_rng(seed)
    colours = np.array([[90, 160, 230], [60, 170, 60], [110, 110, 110]], dtype=np.int64)
    for split, count in (("train", num_train), ("val", num_val)):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            order = rng.permutation(len(CLASSES))
            label = np.repeat(order, -(-SIZE // len(CLASSES)))[:SIZE][:, None].repeat(SIZE, 1)
            noise = rng.integers(-20, 21, (SIZE, SIZE, 3))
            image = np.clip(colours[label] + noise, 0, 255).astype(np.uint8)
            stored = (label + 1).astype(np.uint8)
            stored[:, :2] = 0  # an unlabelled margin
            Image.fromarray(image).save(folder / "images" / split / f"{split}_{i}.jpg")
            Image.fromarray(stored).save(folder / "labels" / split / f"{split}_{i}.png")
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    description = folder / f"{name}.yaml"
    description.write_text(
        f"name: {name}\n"
        "classes: classes.txt\n"
        "image_suffix: .jpg\n"
        "label_suffix: .png\n"
        "ignore_label: 255\n"
        "label_offset: 1\n"
        "splits:\n"
        "  train: {image_dir: images/train, label_dir: labels/train}\n"
        "  val: {image_dir: images/val, label_dir: labels/val, "
        f"benchmark: {name.capitalize()}}}\n")
    return description


@pytest.fixture()
def dataset(tmp_path):
    return write_folder_dataset(tmp_path / "data")


def _problems(description):
    report = check_folder_dataset(str(description), workers=1)
    assert not report.ok
    return report.problems


# ------------------------------------------------------------------------------ the description

def test_description_splits_paths_and_classes(dataset):
    train, val = read_folder_dataset_description(str(dataset))
    assert (train.name, train.benchmark, train.split) == ("toy_train", "toy_train", "train")
    assert (val.name, val.benchmark, val.split) == ("toy_val", "Toy", "val")
    assert val.image_dir == str(dataset.parent / "images" / "val")  # relative to the file
    assert val.class_names == tuple(CLASSES) and val.label_offset == 1


def test_json_description_and_bare_suffix(tmp_path, dataset):
    folder = dataset.parent
    (folder / "classes.json").write_text(json.dumps(CLASSES))
    description = folder / "val.json"
    description.write_text(json.dumps({"name": "toy_json", "image_dir": "images/val",
                                       "label_dir": "labels/val", "image_suffix": "jpg",
                                       "classes": "classes.json", "label_offset": 1}))
    (parsed,) = read_folder_dataset_description(str(description))
    assert parsed.image_suffix == ".jpg" and parsed.class_names == tuple(CLASSES)
    assert check_folder_dataset(str(description)).ok


@pytest.mark.parametrize("text, expected", [
    ("name: x\nimage_dir: i\nlabel_dir: l\nclasses: [a]\nimage_folder: i\n",
     "unknown key 'image_folder'; did you mean image_dir?"),
    ("name: x\nimage_dir: i\nclasses: [a]\n", "missing key(s) label_dir"),
    ("name: x\nimage_dir: i\nlabel_dir: l\nclasses: [a, b]\nignore_label: 1\n",
     "ignore_label 1 is the index of class 'b'"),
    ("name: x\nimage_dir: i\nlabel_dir: l\nclasses: [a, a]\n", "more than once"),
    ("name: my data\nimage_dir: i\nlabel_dir: l\nclasses: [a]\n", "may hold only letters"),
    ("name: x\nimage_dir: i\nlabel_dir: l\nclasses: missing.txt\n", "missing.txt"),
    ("name: x\nimage_dir: i\nlabel_dir: l\nclasses: [a]\nlabel_offset: -1\n", "negative"),
    ("name: [unclosed\n", "is not valid YAML"),
])
def test_bad_description_names_the_problem(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FolderDatasetError, match="bad.yaml") as error:
        read_folder_dataset_description(str(path))
    assert expected in str(error.value)
    # The check command reports it as a problem instead of raising.
    assert any(expected in p for p in _problems(path))


def test_shipped_example_describes_the_synthetic_world():
    from cat_seg.data.synthetic.classes import SEEN_CLASSES, UNSEEN_CLASSES
    from cat_seg.data.synthetic.scenes import IGNORE_LABEL
    from cat_seg.data.synthetic.storage import image_path, label_path

    example = os.path.join(ROOT, "configs", "datasets", "example_folder_dataset.yaml")
    train, val, unseen = read_folder_dataset_description(example)
    synthetic = os.path.join(ROOT, "datasets", "synthetic")  # where the quick start makes it
    for dataset, split, classes in ((train, "seen_train", SEEN_CLASSES),
                                    (val, "seen_val", SEEN_CLASSES),
                                    (unseen, "unseen_val", UNSEEN_CLASSES)):
        assert dataset.image_dir == os.path.dirname(image_path(synthetic, split, 0))
        assert dataset.label_dir == os.path.dirname(label_path(synthetic, split, 0))
        assert image_path(synthetic, split, 0).endswith(dataset.image_suffix)
        assert label_path(synthetic, split, 0).endswith(dataset.label_suffix)
        assert dataset.class_names == tuple(c.name for c in classes)
        assert (dataset.ignore_label, dataset.label_offset) == (IGNORE_LABEL, 0)
    assert (val.benchmark, unseen.benchmark) == ("SynFolder-seen", "SynFolder-unseen")


def test_config_key_registers_and_saves_absolute_paths(tmp_path, make_cfg, monkeypatch):
    from cat_seg.data import register_config_folder_datasets

    write_folder_dataset(tmp_path / "data", name=f"cfg{os.getpid()}")
    monkeypatch.chdir(tmp_path)
    cfg = make_cfg(DATASETS__FOLDER_DATASETS=[f"data/cfg{os.getpid()}.yaml"])
    cfg.freeze()
    resolved = register_config_folder_datasets(cfg)
    assert resolved.DATASETS.FOLDER_DATASETS == [str(tmp_path / "data" / f"cfg{os.getpid()}.yaml")]
    assert cfg.DATASETS.FOLDER_DATASETS == [f"data/cfg{os.getpid()}.yaml"]  # not changed
    assert f"cfg{os.getpid()}_val" in DatasetCatalog.list()
    cfg = make_cfg(DATASETS__FOLDER_DATASETS=["absent.yaml"])
    with pytest.raises(FolderDatasetError, match="absent.yaml does not exist"):
        register_config_folder_datasets(cfg)


@pytest.mark.parametrize("entry", ["demo", "measure"])
def test_demo_and_measuring_register_the_configs_folder_datasets(tmp_path, monkeypatch,
                                                                 write_tiny_config, entry):
    """The image demo's / predictor's set-up and the model-cost measurement register the
    datasets a config describes by files, as training does: a model with HPA, whose prototypes
    start from its training set's class names, builds from a config that trained on one."""
    from detectron2.modeling import build_model

    from cat_seg.analysis.measure import load_config
    from cat_seg.demo.images import setup_cfg

    name = f"{entry}{os.getpid()}"
    write_folder_dataset(tmp_path / "data", name=name)
    config = write_tiny_config(tmp_path / "tiny.yaml", modules=("HPA",))
    monkeypatch.chdir(tmp_path)  # the description named relative to the current folder
    opts = ["DATASETS.FOLDER_DATASETS", f"['data/{name}.yaml']",
            "DATASETS.TRAIN", f"('{name}_train',)", "DATASETS.TEST", f"('{name}_val',)"]
    cfg = setup_cfg(config, opts, device="cpu") if entry == "demo" else \
        load_config(config, opts, device="cpu")
    assert cfg.DATASETS.FOLDER_DATASETS == [str(tmp_path / "data" / f"{name}.yaml")]
    assert MetadataCatalog.get(f"{name}_train").stuff_classes == CLASSES
    model = build_model(cfg)
    assert model.train_dataset == f"{name}_train" and model.prototype_alignment is not None


# ------------------------------------------------------------------------------ the label offset

def test_label_offset_maps_values_and_keeps_ignore(tmp_path):
    raw = np.array([[0, 1, 2, 3, 255]])
    assert apply_label_offset(raw, 1, 255).tolist() == [[255, 0, 1, 2, 255]]
    assert apply_label_offset(raw, 2, 255).tolist() == [[255, 255, 0, 1, 255]]
    assert apply_label_offset(raw, 0, 255) is raw
    # Negative values are no "below the offset" unlabelled pixels: they stay out of range.
    assert apply_label_offset(np.array([[-3, 0]]), 1, 255).tolist() == [[-4, 255]]
    path = tmp_path / "label.png"
    Image.fromarray(raw.astype(np.uint8)).save(path)
    # Records without the field (every built-in dataset's) read the file's values unchanged.
    assert read_record_label({"sem_seg_file_name": str(path)}, 255).tolist() == raw.tolist()
    shifted = read_record_label({"sem_seg_file_name": str(path), "label_offset": 1}, 255)
    assert shifted.tolist() == [[255, 0, 1, 2, 255]] and shifted.dtype == np.int64


def test_zero_shot_crops_read_labels_with_the_offset(tmp_path):
    """image_zero_shot's single-class crops (pure_crops) read a folder dataset's labels with its
    offset, as training and evaluation do: the same images described with offset 1 (class c
    stored as c + 1, 0 unlabelled) and with offset 0 (c as c, 255 unlabelled) give the same
    crops, each of its class's colour band."""
    from cat_seg.evaluation.zero_shot import pure_crops

    shifted = write_folder_dataset(tmp_path / "shifted", name=f"zs{os.getpid()}")
    plain_folder = tmp_path / "plain"
    shutil.copytree(tmp_path / "shifted", plain_folder)
    for path in (plain_folder / "labels").glob("*/*.png"):
        stored = np.asarray(Image.open(path)).astype(np.int64)
        Image.fromarray(np.where(stored == 0, 255, stored - 1).astype(np.uint8)).save(path)
    plain = plain_folder / f"zs{os.getpid()}.yaml"
    plain.write_text(shifted.read_text().replace("label_offset: 1", "label_offset: 0")
                     .replace(f"name: zs{os.getpid()}", f"name: zsplain{os.getpid()}")
                     .replace(f"benchmark: Zs{os.getpid()}", f"benchmark: Zsplain{os.getpid()}"))
    crops = {}
    for description in (shifted, plain):
        val = register_folder_dataset(str(description))[1]
        crops[description] = pure_crops(val, crop=16, stride=8, purity=0.9, per_class=50)
    colours = np.array([[90, 160, 230], [60, 170, 60], [110, 110, 110]])  # write_folder_dataset's
    for c in range(len(CLASSES)):
        assert crops[shifted][c], CLASSES[c]
        assert len(crops[shifted][c]) == len(crops[plain][c])
        for a, b in zip(crops[shifted][c], crops[plain][c]):
            assert np.array_equal(a, b)
            mean = a.reshape(-1, 3).mean(axis=0)
            assert np.abs(colours - mean).sum(axis=1).argmin() == c, (CLASSES[c], mean)


def test_registered_dataset_loads_with_offset_and_metadata(tmp_path):
    description = write_folder_dataset(tmp_path / "data", name=f"reg{os.getpid()}")
    names = register_folder_dataset(str(description))
    train, val = names
    meta = MetadataCatalog.get(val)
    assert meta.stuff_classes == CLASSES and meta.ignore_label == 255
    assert meta.evaluator_type == "sem_seg" and meta.label_offset == 1
    assert meta.benchmark == f"reg{os.getpid()}".capitalize() and meta.split == "val"
    assert folder_benchmark_datasets()[meta.benchmark] == val
    assert folder_benchmark_datasets()[val] == val  # its own name works as a short name too
    records = DatasetCatalog.get(train)
    assert len(records) == 3 and records[0]["label_offset"] == 1
    assert (records[0]["height"], records[0]["width"]) == (SIZE, SIZE)
    label = read_record_label(records[0], 255)
    assert set(np.unique(label)) == {0, 1, 2, 255}  # 1..3 -> 0..2, the 0 margin -> ignore
    assert register_folder_dataset(str(description)) == names  # the same file again: fine

    other = tmp_path / "other.yaml"
    other.write_text(description.read_text().replace("classes.txt", "data/classes.txt"))
    with pytest.raises(FolderDatasetError, match="already described by"):
        register_folder_dataset(str(other))
    clash = tmp_path / "clash.yaml"
    clash.write_text("name: mine\nbenchmark: A-150\nimage_dir: i\nlabel_dir: l\nclasses: [a]\n")
    with pytest.raises(FolderDatasetError, match="'A-150' is already the short name"):
        register_folder_dataset(str(clash))


def test_loading_names_the_unpaired_files(tmp_path):
    description = write_folder_dataset(tmp_path / "data", name=f"load{os.getpid()}")
    (tmp_path / "data" / "labels" / "val" / "val_1.png").unlink()
    val = register_folder_dataset(str(description))[1]
    with pytest.raises(FileNotFoundError, match="val_1.*allow_unlabelled_images"):
        DatasetCatalog.get(val)


# ------------------------------------------------------------------------------ the check

def test_check_passes_a_good_dataset(dataset, caplog):
    report = check_folder_dataset(str(dataset))
    assert report.ok and not report.problems, report.format()
    assert "toy_train (benchmark toy_train): 3 image/label pairs, 3 classes" in report.format()
    with cat_seg_logs(caplog):  # the report is logged (an entry point shows it on stdout)
        assert check_data_main([str(dataset)]) == 0
    assert "OK: ready for training" in caplog.text


def test_check_size_mismatch_names_the_label(dataset):
    label = dataset.parent / "labels" / "train" / "train_1.png"
    Image.fromarray(np.ones((SIZE, 48), np.uint8)).save(label)
    (problem,) = _problems(dataset)
    assert problem.startswith(f"size mismatch: label {label} is 64x48")
    assert "train_1.jpg is 64x64" in problem


def test_check_out_of_range_id_names_the_label(dataset):
    label = dataset.parent / "labels" / "val" / "val_0.png"
    values = np.full((SIZE, SIZE), 2, np.uint8)
    values[0, :3] = [4, 9, 255]  # 4 - 1 = 3 and 9 - 1 = 8 are no class; 255 is the ignore value
    Image.fromarray(values).save(label)
    (problem,) = _problems(dataset)
    assert f"label {label} holds values 4, 9 that are no class" in problem
    assert "minus the offset 1 must lie in [0, 3)" in problem


def test_check_flags_the_value_the_offset_would_turn_into_ignore(dataset):
    dataset.write_text(dataset.read_text().replace("ignore_label: 255", "ignore_label: 200"))
    label = dataset.parent / "labels" / "train" / "train_0.png"
    values = np.full((SIZE, SIZE), 1, np.uint8)
    values[0, :2] = [200, 201]  # 200: unlabelled; 201 - 1 = 200 would silently read as ignore
    Image.fromarray(values).save(label)
    (problem,) = _problems(dataset)
    assert problem.startswith(f"label {label} holds values 201 that are no class")


def test_check_empty_folder_names_the_folder(dataset):
    folder = dataset.parent / "images" / "val"
    for image in folder.iterdir():
        image.rename(image.with_suffix(".JPG"))
    problems = _problems(dataset)
    assert f"the image folder {folder} is empty: no *.jpg file (it holds 2 *.JPG" in problems[0]
    # ... and the labels that lost their images are each named.
    assert sum("has no image" in p for p in problems) == 2


def test_check_corrupt_and_unreadable_files_are_named(dataset):
    image = dataset.parent / "images" / "train" / "train_0.jpg"
    image.write_bytes(image.read_bytes()[:200])  # truncated
    label = dataset.parent / "labels" / "train" / "train_2.png"
    label.write_bytes(b"not a png")
    colour = dataset.parent / "labels" / "val" / "val_1.png"
    Image.new("RGB", (SIZE, SIZE)).save(colour)  # a colour-coded label
    problems = _problems(dataset)
    assert len(problems) == 3, problems
    assert any(p.startswith(f"unreadable image {image}") for p in problems)
    assert any(p.startswith(f"unreadable label {label}") for p in problems)
    assert any(p.startswith(f"unreadable label {colour}") and "'RGB'" in p for p in problems)


def test_check_missing_label_and_missing_image_are_named(dataset):
    (dataset.parent / "labels" / "train" / "train_1.png").unlink()
    (dataset.parent / "images" / "val" / "val_0.jpg").unlink()
    problems = _problems(dataset)
    image = dataset.parent / "images" / "train" / "train_1.jpg"
    label = dataset.parent / "labels" / "val" / "val_0.png"
    assert f"image {image} has no label (expected " \
           f"{dataset.parent / 'labels' / 'train' / 'train_1.png'})" in problems
    assert any(p.startswith(f"label {label} has no image") for p in problems)


def test_check_lists_every_problem_capped_and_exits_non_zero(tmp_path, caplog):
    description = write_folder_dataset(tmp_path / "data", num_train=8)
    for label in (tmp_path / "data" / "labels" / "train").iterdir():
        label.write_bytes(b"broken")
    assert len(_problems(description)) == 8
    with cat_seg_logs(caplog):
        assert check_data_main([str(description), "--max-problems", "3"]) == 1
    # The report at INFO (stdout from the command line), the count of failures as an error
    # (stderr). A set: caplog may hear a record twice (the root's handler and cat_seg's).
    (report,) = {r.getMessage() for r in caplog.records if r.levelno == logging.INFO}
    assert report.count("PROBLEM: unreadable label") == 3
    assert "... and 5 more problems" in report and "FAILED: 8 problem(s)" in report
    assert {(r.levelno, r.getMessage()) for r in caplog.records if r.levelno > logging.INFO} == \
        {(logging.ERROR, "[check-data] 1 of 1 dataset description(s) have problems")}


# ------------------------------------------------------------------------------ command line only

def _run(command, **env):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    return result


@pytest.mark.slow
def test_folder_dataset_checked_trained_and_evaluated_from_the_command_line(
        tmp_path, write_tiny_config):
    description = write_folder_dataset(tmp_path / "data")
    config = write_tiny_config(tmp_path / "tiny.yaml")
    with open(config, "a") as f:  # small test-time windows for 64 px images
        f.write("TEST:\n  SLIDING_WINDOW_CROP: 64\n  SLIDING_WINDOW_OUT_RES: [106, 106]\n")

    # The check command: a broken copy fails naming the file, the dataset passes.
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "data", broken)
    (broken / "labels" / "val" / "val_1.png").write_bytes(b"truncated")
    result = _run([sys.executable, "tools/check_data.py", str(broken / "toy.yaml")])
    assert result.returncode == 1
    assert f"unreadable label {broken / 'labels' / 'val' / 'val_1.png'}" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == \
        "[check-data] 1 of 1 dataset description(s) have problems"
    result = _run([sys.executable, "tools/check_data.py", str(description)])
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]

    # Training: the dataset named by its description file, 10 iterations.
    run = tmp_path / "run"
    result = _run([sys.executable, "train_net.py", "--config-file", config,
                   "DATASETS.FOLDER_DATASETS", f"['{description}']",
                   "DATASETS.TRAIN", "('toy_train',)", "DATASETS.TEST", "('toy_val',)",
                   "SOLVER.MAX_ITER", "10", "INPUT.MIN_SIZE_TRAIN", "(64,)",
                   "INPUT.MAX_SIZE_TRAIN", "128", "DATALOADER.NUM_WORKERS", "0",
                   "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(run)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "model_final.pth").is_file()
    rows = [json.loads(line) for line in (run / "metrics.json").read_text().splitlines()]
    assert max(r["iteration"] for r in rows if "total_loss" in r) == 9
    assert any("sem_seg/IoU-grass" in r for r in rows)  # detectron2's final test on toy_val
    assert str(description) in (run / "config.yaml").read_text()  # saved absolute

    # Evaluation with the run's own config: the benchmark by its short name, pictures in vis/.
    out = tmp_path / "eval"
    result = _run(["bash", "eval_ahs.sh", str(run / "config.yaml"), str(run / "model_final.pth"),
                   str(out), "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"],
                  BENCHMARKS="Toy", VIS="2")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["Toy"]
    scores = results["Toy"]["sem_seg"]
    assert 0.0 <= scores["mIoU"] <= 100.0 and all(f"IoU-{c}" in scores for c in CLASSES)
    assert results["Toy"]["throughput"]["images"] == 2
    table = (out / "sem_seg_per_class_toy_val.csv").read_text()
    rows = [line for line in table.splitlines() if line and not line.startswith("#")]
    assert rows[0].startswith("class,IoU") and [r.split(",")[0] for r in rows[1:]] == CLASSES
    # Every labelled pixel was counted as its class (offset applied): 64 rows x 62 columns.
    assert sum(int(r.split(",")[3]) for r in rows[1:]) == 2 * SIZE * (SIZE - 2)
    assert sorted(p.name for p in (out / "vis" / "Toy").glob("*.png")) == ["val_0.png", "val_1.png"]
    assert "| metric | Toy | mean |" in (out / "results.md").read_text()
