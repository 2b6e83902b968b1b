"""Bad input, one test per case: each ends in an error that names the problem and the fix, or in
the handling a user expects, never in a silently wrong mIoU.

The data cases go through the trainer's own loaders (``Trainer.build_train_loader`` /
``build_test_loader``), the evaluation cases through ``inference_on_dataset`` with the real model
and evaluator, the config cases through ``setup`` and ``build_model``. Cases covered end
to end elsewhere are named where they are (see ``test_class_json_*``)."""
import argparse
import os

import numpy as np
import open_clip
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model
from PIL import Image

from cat_seg.engine.launch import setup
from cat_seg.engine.trainer import DatasetInputError, Trainer
from cat_seg.data import benchmarks, register_all_benchmarks
from cat_seg.data.benchmarks import DatasetNotPreparedError
from cat_seg.engine import AtomicCheckpointer
from cat_seg.modeling.clip.architectures import resolve_architecture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from cat_seg.demo import images as demo_images

CONFIG = os.path.join(ROOT, "configs/synthetic/quickstart.yaml")
DATASET = "bad_input_dataset"
CLASSES = ["sky", "grass", "water"]
SMALL = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "1",
         "MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION", "64", "INPUT.MIN_SIZE_TRAIN", "(64,)",
         "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.CROP.SIZE", "(64, 64)", "INPUT.SIZE_DIVISIBILITY",
         "64", "INPUT.MIN_SIZE_TEST", "64", "MODEL.SEM_SEG_HEAD.CLASS_PAD_LEN", "8",
         "DATASETS.TRAIN", f"('{DATASET}',)", "DATASETS.TEST", f"('{DATASET}',)"]


def _save(path, array, mode=None):
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return str(path)


def _scene(folder, name="a", size=(48, 64), label_max=2):
    """A random RGB image and a label map with values in [0, label_max] and some 255."""
    rng = np.random.default_rng(0)
    height, width = size
    image = _save(folder / f"{name}.png", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    label = rng.integers(0, label_max + 1, size, dtype=np.uint8)
    label[:4] = 255
    return {"file_name": image, "sem_seg_file_name": _save(folder / f"{name}_label.png", label),
            "height": height, "width": width}


@pytest.fixture()
def dataset():
    """Register DATASET with the records appended to the returned list (3 classes)."""
    records = []
    DatasetCatalog.register(DATASET, lambda: [dict(r) for r in records])
    MetadataCatalog.get(DATASET).set(stuff_classes=CLASSES, ignore_label=255,
                                     evaluator_type="sem_seg")
    yield records
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


def _first_training_batch(cfg):
    return next(iter(Trainer.build_train_loader(cfg)))


@pytest.fixture(scope="module")
def model(make_cfg):
    torch.manual_seed(0)
    # Trained vocabulary: the synthetic seen classes (metadata only, no file is read).
    model = build_model(make_cfg(CONFIG, [*SMALL, "DATASETS.TRAIN", "('synthetic_seen_train',)"]))
    return model.eval()


def _evaluate(model, cfg):
    loader = Trainer.build_test_loader(cfg, DATASET)
    return inference_on_dataset(model, loader, Trainer.build_evaluator(cfg, DATASET))


# ------------------------------------------------------------------------------ datasets

def test_dataset_root_missing(tmp_path, make_cfg):
    cfg = make_cfg(CONFIG, [*SMALL, "DATASETS.TRAIN", "('coco_2017_train_stuff_all_sem_seg',)"])
    register_all_benchmarks(str(tmp_path / "no_such_root"))
    try:
        with pytest.raises(DatasetNotPreparedError, match=r"(?s)annotations_detectron2/train2017 does not exist.*"
                                                          r"prepare_coco_stuff\.py"):
            Trainer.build_train_loader(cfg)
        with pytest.raises(DatasetNotPreparedError, match=r"does not exist.*prepare_ade20k_150"):
            Trainer.build_test_loader(cfg, "ade20k_150_test_sem_seg")
    finally:
        register_all_benchmarks()


@pytest.mark.parametrize("damage", ["truncated", "not an image"])
def test_corrupt_or_truncated_image(tmp_path, dataset, damage, make_cfg):
    record = _scene(tmp_path)
    with open(record["file_name"], "rb") as f:
        data = f.read()
    with open(record["file_name"], "wb") as f:
        f.write(data[: len(data) // 2] if damage == "truncated" else b"GIF89a garbage")
    dataset.append(record)
    with pytest.raises(ValueError, match=f"image file {record['file_name']} is corrupt, truncated"):
        _first_training_batch(make_cfg(CONFIG, SMALL))


def test_label_file_missing(tmp_path, dataset, model, make_cfg):
    record = _scene(tmp_path)
    os.remove(record["sem_seg_file_name"])
    dataset.append(record)
    message = f"label file {record['sem_seg_file_name']} does not exist; check the dataset root"
    # training names the file in a DatasetInputError (printed as one line by the entry points)
    with pytest.raises(DatasetInputError, match=message):
        _first_training_batch(make_cfg(CONFIG, SMALL))
    with pytest.raises(DatasetInputError, match=message):  # evaluation reads it too
        _evaluate(model, make_cfg(CONFIG, SMALL))


def test_label_values_outside_the_classes_in_training(tmp_path, dataset, make_cfg):
    dataset.append(_scene(tmp_path, label_max=5))  # classes 3-5 do not exist (3 classes)
    with pytest.raises(ValueError, match=r"holds values \[3, 4, 5\] outside the training classes "
                                         r"\[0, 3\) \(ignore label 255\)"):
        _first_training_batch(make_cfg(CONFIG, SMALL))


def test_label_values_outside_the_classes_in_evaluation(tmp_path, dataset, model, make_cfg):
    dataset.append(_scene(tmp_path, label_max=5))
    with pytest.raises(ValueError, match=r"holds values \[3, 4, 5\] outside the 3 classes"):
        _evaluate(model, make_cfg(CONFIG, SMALL))


def test_image_and_label_of_different_sizes_in_evaluation(tmp_path, dataset, model, make_cfg):
    """The data is named as the cause (both files), not the model; the prepare scripts list
    such pairs beforehand (test_prepare_datasets.py::test_image_and_label_sizes_are_checked...)."""
    record = _scene(tmp_path, size=(48, 64))
    _save(record["sem_seg_file_name"], np.zeros((40, 64), np.uint8))
    dataset.append(record)
    with pytest.raises(ValueError, match=r"the data is inconsistent, not the model: label "
                                         r".*a_label\.png is 40x64 but its image .*a\.png is 48x64"
                                         r".*re-run the dataset's prepare script"):
        _evaluate(model, make_cfg(CONFIG, SMALL))


@pytest.mark.parametrize("content, message", [
    ('["sky", "grass",', "is not valid JSON"),
    ("[]", "must be a JSON list of non-empty"),
    ('["sky", "grass", "sky"]', "lists a class name twice"),
])
def test_class_json_malformed_empty_or_duplicated(tmp_path, monkeypatch, content, message):
    """Benchmark class lists (cat_seg/data/class_names/*.json, read at registration). The demo's
    --vocabulary-file goes through demo_images.parse_vocabulary, tested end to end on the same three
    defects in test_demo.py::test_malformed_vocabulary_files_are_rejected; checked here once more
    with these files."""
    (tmp_path / "mine.json").write_text(content)
    monkeypatch.setattr(benchmarks, "_CLASS_NAMES_DIR", tmp_path)
    benchmarks._class_names.cache_clear()
    try:
        with pytest.raises(ValueError, match=message):
            benchmarks.load_class_names("mine")
    finally:
        benchmarks._class_names.cache_clear()
    with pytest.raises(ValueError, match="not valid JSON|empty|twice"):
        demo_images.parse_vocabulary(file=str(tmp_path / "mine.json"))


# ------------------------------------------------------------------------------ vocabularies

def _image(size=(48, 64)):
    rng = np.random.default_rng(1)
    image = torch.as_tensor(rng.integers(0, 256, (3, *size), dtype=np.uint8))
    return [{"image": image, "height": size[0], "width": size[1]}]


def test_vocabulary_of_one_class(model):
    model.set_vocabulary(["sky"])
    try:
        with torch.no_grad():
            scores = model(_image())[0]["sem_seg"]
    finally:
        model.set_vocabulary(None)
    assert scores.shape == (1, 48, 64) and torch.isfinite(scores).all()
    assert ((scores > 0) & (scores < 1)).all()


def test_vocabulary_of_1001_classes_goes_through_the_top_k_path(model):
    """More classes than CLASS_PAD_LEN (8 here): each image keeps its top 8 classes, the others
    score sigmoid(-100) ~ 0; the output still has one channel per class."""
    names = [f"object number {i}" for i in range(1001)]
    model.set_vocabulary(names)
    try:
        with torch.no_grad():
            scores = model(_image())[0]["sem_seg"]
    finally:
        model.set_vocabulary(None)
    assert scores.shape == (1001, 48, 64) and torch.isfinite(scores).all()
    kept = (scores > 1e-6).flatten(1).any(dim=1)
    assert 1 <= int(kept.sum()) <= 8


# ------------------------------------------------------------------------------ images

def test_image_smaller_than_the_crop_is_padded_and_trains(tmp_path, dataset, model, make_cfg):
    dataset.append(_scene(tmp_path, size=(20, 28)))
    cfg = make_cfg(CONFIG, [*SMALL, "INPUT.MIN_SIZE_TRAIN", "(20,)", "INPUT.MAX_SIZE_TRAIN", "40"])
    batch = _first_training_batch(cfg)
    image, label = batch[0]["image"], batch[0]["sem_seg"]
    assert image.shape == (3, 64, 64) and label.shape == (64, 64)  # padded to the crop
    assert (label[20:] == 255).all() and (label[:, 28:] == 255).all()  # padding is ignored
    assert (image[:, 20:] == 0).all()
    model.train()
    try:
        losses = model(batch)
    finally:
        model.eval()
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "16-bit"])
def test_grayscale_rgba_and_16bit_images(tmp_path, dataset, kind, make_cfg):
    record = _scene(tmp_path, size=(64, 64))
    if kind == "grayscale":
        _save(record["file_name"], np.full((64, 64), 77, np.uint8))
        expected = 77
    elif kind == "rgba":
        rgba = np.zeros((64, 64, 4), np.uint8)
        rgba[..., :3], rgba[..., 3] = 77, 10  # nearly transparent: alpha is dropped
        _save(record["file_name"], rgba)
        expected = 77
    else:
        _save(record["file_name"], np.full((64, 64), 65535, np.uint16))
        expected = 255  # rescaled by the full 16-bit range
    dataset.append(record)
    cfg = make_cfg(CONFIG, [*SMALL, "INPUT.COLOR_AUG_SSD", "False"])
    image = _first_training_batch(cfg)[0]["image"]
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    assert (image == expected).all()


# ------------------------------------------------------------------------------ weights

def _checkpointer_load(model, path):
    # What train_net --eval-only and Trainer.resume_or_load do with MODEL.WEIGHTS.
    return AtomicCheckpointer(model, save_dir="").resume_or_load(path, resume=False)


def test_model_weights_missing_truncated_or_of_another_architecture(tmp_path, model):
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*absent\.pth \(MODEL\.WEIGHTS\) "
                                                r"does not exist"):
        _checkpointer_load(model, str(tmp_path / "absent.pth"))

    good = tmp_path / "model_final.pth"
    AtomicCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.pth could not be read .*truncated or corrupt"):
        _checkpointer_load(model, str(truncated))

    # Another architecture: a baseline checkpoint (no AFR) whose head is ViT-L sized.
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith("feature_rectification")}
    name = next(k for k, v in state.items() if k.startswith("sem_seg_head") and v.dim() == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    other = tmp_path / "other.pth"
    torch.save({"model": state}, other)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"does not fit the model built from the config: \d+ model "
                                         r"weights missing \(e\.g\. .*feature_rectification.* and 1 of "
                                         r"another shape"):
        _checkpointer_load(model, str(other))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    _checkpointer_load(model, str(good))  # the right file loads


def test_clip_weights_missing_truncated_or_of_another_architecture(tmp_path, make_cfg):
    def build(weights):
        return build_model(make_cfg(CONFIG, [*SMALL, "MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS",
                                             str(weights)]))

    with pytest.raises(FileNotFoundError, match="CLIP checkpoint file not found.*absent.pt"):
        build(tmp_path / "absent.pt")
    arch = resolve_architecture("AHS-Tiny/16")
    clip_state = open_clip.model.CLIP(embed_dim=arch.embed_dim, vision_cfg=arch.vision_cfg,
                                      text_cfg=arch.text_cfg).state_dict()
    path = tmp_path / "clip.pt"
    torch.save(clip_state, path)
    truncated = tmp_path / "clip_truncated.pt"
    truncated.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError, match="Could not read .*clip_truncated.pt.* as a CLIP state dict"):
        build(truncated)
    other = {k: torch.zeros(*v.shape[:-1], v.shape[-1] * 2) if k == "positional_embedding" else v
             for k, v in clip_state.items()}
    torch.save(other, path)
    with pytest.raises(ValueError, match=r"(?s)does not match the configured architecture.*"
                                         r"positional_embedding"):
        build(path)


# ------------------------------------------------------------------------------ config

def _setup(tmp_path, *opts, config=CONFIG):
    args = argparse.Namespace(config_file=config, resume=False, eval_only=False, num_gpus=1,
                              num_machines=1, machine_rank=0, dist_url="auto",
                              opts=[*SMALL, "OUTPUT_DIR", str(tmp_path / "out"), *opts])
    return setup(args)


def test_unknown_config_key(tmp_path):
    with pytest.raises((KeyError, AssertionError), match="Non-existent key.*PROTOTYPE_LOSS_WEIGTH"):
        _setup(tmp_path, "MODEL.SEM_SEG_HEAD.PROTOTYPE_LOSS_WEIGTH", "0.1")
    config = tmp_path / "typo.yaml"
    config.write_text(f"_BASE_: {CONFIG}\nSOLVER:\n  MAX_ITERS: 10\n")
    with pytest.raises(KeyError, match="Non-existent config key: SOLVER.MAX_ITERS"):
        _setup(tmp_path, config=str(config))


def test_negative_loss_weight(tmp_path):
    with pytest.raises(ValueError, match=r"MODEL\.SEM_SEG_HEAD\.PROTOTYPE_LOSS_WEIGHT=-0\.1 is "
                                         r"negative; it must be >= 0"):
        _setup(tmp_path, "MODEL.SEM_SEG_HEAD.PROTOTYPE_LOSS_WEIGHT", "-0.1")


def test_block_size_that_does_not_divide_the_width(tmp_path):
    cfg = _setup(tmp_path, "MODEL.SEM_SEG_HEAD.OFT_BLOCK_SIZE", "48")
    with pytest.raises(ValueError, match=r"OFT block size 48 \(MODEL\.SEM_SEG_HEAD\.OFT_BLOCK_SIZE\) "
                                         r"does not divide"):
        build_model(cfg)


def test_evaluation_loads_images_in_worker_processes(tmp_path, dataset, make_cfg):
    # DATALOADER.NUM_WORKERS decode the next images while the model runs (issue 13).
    dataset.append(_scene(tmp_path))
    workers = [*SMALL]
    workers[workers.index("DATALOADER.NUM_WORKERS") + 1] = "2"
    loader = Trainer.build_test_loader(make_cfg(CONFIG, workers), DATASET)
    assert loader.num_workers == 2
    batch = next(iter(loader))
    assert batch[0]["image"].shape[0] == 3
