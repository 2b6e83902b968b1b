"""Reliability, round two (issue 14): nothing silent. One test per case: the input, the command
or function a user runs, and the message (or behaviour) they get. The table of output/note14.md
lists the same cases."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.engine import HookBase, PeriodicCheckpointer, SimpleTrainer
from detectron2.modeling import build_model
from PIL import Image
from torch import nn

import cat_seg  # noqa: F401  (registers the model, head and datasets)
from cat_seg import build_config
from cat_seg.engine import AtomicCheckpointer
from cat_seg.engine.checkpointer import CheckpointMismatchError
from cat_seg.utils import visualization
from cat_seg.utils.paths import check_output_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import demo  # noqa: E402
from cat_seg.demo import images as demo_images

FULL = "configs/synthetic/quickstart.yaml"
BASELINE = "configs/synthetic/quickstart_baseline.yaml"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)


def _run(*command, timeout=300, **env):
    return subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**ENV, **env})


@pytest.fixture(scope="module")
def full_weights(tmp_path_factory):
    """A checkpoint of the quick start's full model (AFR + HPA weights), as train_net writes."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("full")
    model = build_model(build_config(os.path.join(ROOT, FULL), ["MODEL.DEVICE", "cpu"]))
    AtomicCheckpointer(model, save_dir=str(folder)).save("model_final")
    return str(folder / "model_final.pth")


# ------------------------------------------------------------------ weights of another config

def test_eval_ahs_refuses_weights_of_another_config_unless_allowed(tmp_path, full_weights,
                                                                   write_prepared_benchmarks):
    data = tmp_path / "data"
    write_prepared_benchmarks(data, num_images=1, size=(24, 32),
                              dataset_names=["voc_2012_test_sem_seg"])
    out = tmp_path / "eval"
    command = ["bash", "eval_ahs.sh", BASELINE, full_weights, str(out), "MODEL.DEVICE", "cpu",
               "TEST.SLIDING_WINDOW", "False"]
    result = _run(*command, BENCHMARKS="PAS-20", DETECTRON2_DATASETS=str(data))
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("[eval] the checkpoint") and "holds 13 weights the model" in last
    assert "feature_rectification.* (11), prototype_alignment.* (2)" in last
    assert "MODEL.ALLOW_UNEXPECTED_WEIGHTS True" in last and "Traceback" not in result.stderr
    assert not (out / "results.json").exists()

    result = _run(*command, "MODEL.ALLOW_UNEXPECTED_WEIGHTS", "True", BENCHMARKS="PAS-20",
                  DETECTRON2_DATASETS=str(data))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[eval] MODEL.ALLOW_UNEXPECTED_WEIGHTS: 13 weights of" in result.stderr  # console
    assert "IGNORED" in result.stderr  # the checkpointer's warning (also in log.txt)
    weights = json.loads((out / "results.json").read_text())["PAS-20"]["weights"]
    assert weights.pop("size") == os.path.getsize(full_weights) and len(weights.pop("sha256")) == 64
    assert weights == {"file": full_weights, "allow_unexpected_weights": True, "ignored_keys": 13,
                       "ignored_modules": ["feature_rectification.alpha",
                                           "feature_rectification.certainty_head",
                                           "feature_rectification.channel_attention",
                                           "feature_rectification.spatial_attention",
                                           "prototype_alignment.prototypes",
                                           "prototype_alignment.temperature_logits"]}


def test_resume_is_strict_but_fine_tuning_drops_unexpected_weights_with_a_warning(
        tmp_path, full_weights, caplog):
    model = build_model(build_config(os.path.join(ROOT, BASELINE), ["MODEL.DEVICE", "cpu"]))
    with pytest.raises(CheckpointMismatchError, match="holds 13 weights the model built"):
        AtomicCheckpointer(model).load(full_weights)  # evaluation, demo, --resume
    fine_tuning = AtomicCheckpointer(model, allow_unexpected=True)  # train_net without --resume
    with caplog.at_level("WARNING"):
        fine_tuning.load(full_weights)
    assert len(fine_tuning.ignored_keys) == 13
    assert any("13 weights of" in r.getMessage() and "IGNORED" in r.getMessage()
               for r in caplog.records)


def test_official_catseg_checkpoint_names_the_conversion_command(tmp_path):
    state = {"sem_seg_head.predictor.clip_model.visual.conv1.weight": torch.zeros(768, 3, 16, 16),
             "sem_seg_head.predictor.transformer.conv1.weight": torch.zeros(128, 80, 7, 7)}
    path = tmp_path / "model_base.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointMismatchError) as error:
        AtomicCheckpointer(nn.Linear(2, 2)).load(str(path))
    message = str(error.value)
    assert "is an official CAT-Seg checkpoint" in message
    assert (f"python tools/convert_checkpoint.py {path} {tmp_path}/model_base_ahs.pth "
            "--config-file configs/vitb_384_catseg.yaml") in message
    assert "missing" not in message


# ------------------------------------------------------------------ output folders

def test_output_folder_that_cannot_be_created_is_named_before_any_work(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"cannot be created: .*a_file is a file, not a folder"):
        check_output_dir(str(blocker / "out"))
    for typed in (str(blocker), str(blocker) + os.sep):  # "a_file/" is the same file
        with pytest.raises(OSError, match="is a file, not a folder"):
            check_output_dir(typed)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OSError, match=r"cannot be created or written \(Permission denied\)"):
            check_output_dir(str(locked / "out"))

    # The demo stops before it builds the model.
    monkeypatch.setattr(demo, "build_demo_model", lambda cfg: pytest.fail("model was built"))
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    with pytest.raises(OSError, match="output folder \\(--output\\) .*a_file is a file"):
        demo.main([str(image), "--vocabulary", "sky", "--config-file", FULL,
                   "--output", str(blocker / "out")])


def test_train_net_and_eval_ahs_print_one_line_for_an_unusable_output_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = _run(sys.executable, "train_net.py", "--config-file", FULL,
                  "OUTPUT_DIR", str(blocker / "out"), "MODEL.DEVICE", "cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"[train_net] the output folder (OUTPUT_DIR) {blocker}/out cannot be created: {blocker} "
        "is a file, not a folder; choose another path")
    result = _run("bash", "eval_ahs.sh", FULL, str(blocker), str(blocker / "eval"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "[eval] the output folder" in result.stderr and "is a file, not a folder" in result.stderr


def test_train_net_refuses_eval_only_without_weights_and_a_typo_in_a_key(tmp_path):
    result = _run(sys.executable, "train_net.py", "--config-file", FULL, "--eval-only",
                  "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--eval-only without weights would evaluate an untrained model" in result.stderr
    result = _run(sys.executable, "train_net.py", "--config-file", FULL,
                  "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_ITERS", "5")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "[train_net] unknown config key SOLVER.MAX_ITERS: did you mean SOLVER.MAX_ITER")
    result = _run(sys.executable, "train_net.py", "--config-file", "configs/nope.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "[train_net] config file configs/nope.yaml does not exist" in result.stderr
    result = _run(sys.executable, "train_net.py", "--config-file", FULL, "OUTPUT_DIR",
                  str(tmp_path / "out"), "MODEL.WEIGHTS", str(tmp_path / "nope.pth"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"[train_net] MODEL.WEIGHTS {tmp_path}/nope.pth does not exist" in result.stderr


def test_an_empty_training_dataset_is_named():
    from cat_seg.data.resumable_stream import ResumableTrainingStream

    with pytest.raises(ValueError, match=r"the training datasets \(DATASETS.TRAIN\) hold no record"):
        ResumableTrainingStream([], mapper=dict, seed=0, batch_size_per_process=1)


# ------------------------------------------------------------------ demo

@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory, write_tiny_config):
    root = tmp_path_factory.mktemp("demo")
    config = write_tiny_config(root / "tiny.yaml")
    full_config = write_tiny_config(root / "tiny_full.yaml", modules=("AFR", "HPA"))
    torch.manual_seed(0)
    model = build_model(demo_images.setup_cfg(config, device="cpu"))
    torch.save({"model": model.state_dict()}, root / "model.pth")
    full = build_model(demo_images.setup_cfg(full_config, device="cpu"))
    torch.save({"model": full.state_dict()}, root / "full.pth")
    return root, config


def test_demo_refuses_weights_of_another_config_unless_allowed(tiny_demo, tmp_path, capsys):
    root, config = tiny_demo
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(tmp_path / "x.png")
    args = [str(tmp_path / "x.png"), "--vocabulary", "sky, road", "--config-file", config,
            "--weights", str(root / "full.pth"), "--output", str(tmp_path / "out"), "--device", "cpu"]
    with pytest.raises(ValueError, match="weights the model built from the config does not have: "
                                         "feature_rectification.*--allow-unexpected-weights"):
        demo.main(args)
    results = demo.main(args + ["--allow-unexpected-weights"])
    assert len(results) == 1
    assert "--allow-unexpected-weights: 13 weights of" in capsys.readouterr().out


def _exif_photo(path, orientation):
    """A 20x40 (H x W) stored picture, left half red, with an EXIF orientation tag."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20, 0] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes())


def test_demo_applies_the_exif_orientation_of_a_phone_photo(tiny_demo, tmp_path, capsys):
    root, config = tiny_demo
    _exif_photo(tmp_path / "phone.jpg", 6)  # 6: the camera was turned; viewers rotate 90° cw
    image, orientation = demo_images.read_demo_image(str(tmp_path / "phone.jpg"))
    assert orientation == 6 and image.shape == (40, 20, 3)
    assert image[:20, :, 0].mean() > 200 and image[20:, :, 0].mean() < 50  # red half on top
    results = demo.main([str(tmp_path / "phone.jpg"), "--vocabulary", "sky, road", "--config-file",
                         config, "--weights", str(root / "model.pth"), "--output",
                         str(tmp_path / "out"), "--device", "cpu"])
    assert results[0]["exif_orientation"] == 6
    assert np.asarray(Image.open(results[0]["labels"])).shape == (40, 20)  # upright
    captured = capsys.readouterr()
    assert "EXIF orientation 6 applied" in captured.out + captured.err


# ------------------------------------------------------------------ legend font

def test_legend_draws_non_ascii_names_with_real_glyphs():
    files = visualization.font_files()
    assert files, "no TrueType font found (matplotlib's DejaVuSans should be)"
    font = visualization.legend_font(14, ["café", "Straße", "Ωmega"])
    assert font.path == files[0] and os.path.basename(font.path) == "DejaVuSans.ttf"
    # "é" is drawn as itself, not as the font's "missing glyph" box (what U+E000 gets).
    box = font.getmask("\ue000")
    for char in "éßΩ":
        mask = font.getmask(char)
        assert mask.size != box.size or bytes(mask) != bytes(box), char


def test_legend_warns_naming_characters_no_font_covers(caplog):
    visualization._warned.clear()
    with caplog.at_level("WARNING"):
        visualization.legend_font(14, ["\U00013000 hieroglyph"])
    assert any("no glyph for \U00013000" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ NaN / Inf

class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, batch):
        return {"loss": (self.linear(batch) ** 2).mean()}


class _PoisonAfter(HookBase):
    """Weights turn NaN in step ``at`` while its loss was still finite (an overflowing update):
    the next step's loss is NaN and stops training."""

    def __init__(self, at):
        self.at = at

    def after_step(self):
        if self.trainer.iter == self.at:
            with torch.no_grad():
                self.trainer.model.linear.weight.fill_(float("nan"))


def test_divergence_never_leaves_last_checkpoint_on_non_finite_weights(tmp_path):
    torch.manual_seed(0)
    model = _Toy()
    data = iter(lambda: torch.randn(4, 3), None)
    trainer = SimpleTrainer(model, data, torch.optim.SGD(model.parameters(), lr=0.1))
    checkpointer = AtomicCheckpointer(model, save_dir=str(tmp_path))
    # Checkpoints after steps 1, 3, 5; the weights go NaN in step 5 (finite loss).
    trainer.register_hooks([_PoisonAfter(5), PeriodicCheckpointer(checkpointer, 2, max_iter=20)])
    with pytest.raises(FloatingPointError, match=r"not saving model_0000005\.pth: 1 model weight "
                                                 r"tensors hold NaN/Inf .*last_checkpoint still "
                                                 r"points at model_0000003\.pth"):
        trainer.train(0, 20)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (tmp_path / "model_0000005.pth").exists()
    saved = torch.load(tmp_path / "model_0000003.pth", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in saved.values())
    # A non-finite file from elsewhere is refused at load time.
    torch.save({"model": {"linear.weight": torch.full((1, 3), float("inf")),
                          "linear.bias": torch.zeros(1)}}, tmp_path / "inf.pth")
    with pytest.raises(CheckpointMismatchError, match="holds NaN/Inf weights .*linear.weight"):
        AtomicCheckpointer(_Toy()).load(str(tmp_path / "inf.pth"))


def test_resume_with_a_dangling_last_checkpoint_names_the_tag_and_the_files_there(tmp_path):
    AtomicCheckpointer(nn.Linear(2, 2), save_dir=str(tmp_path)).save("model_0000009")
    (tmp_path / "last_checkpoint").write_text("model_0000019.pth")  # deleted by hand
    with pytest.raises(FileNotFoundError, match=r"--resume: .*last_checkpoint names "
                                                r"model_0000019\.pth, which does not exist .*"
                                                r"\(model_0000009\.pth\)"):
        AtomicCheckpointer(nn.Linear(2, 2), save_dir=str(tmp_path)).resume_or_load("", resume=True)


def test_training_stream_resumed_at_an_iteration_repeats_the_uninterrupted_one():
    """Records and augmentation randomness as a function of (seed, position): started at
    iteration 3, with 2 loader workers' interleaving, the stream equals the tail of a fresh one."""
    from itertools import islice

    from torch.utils.data import DataLoader

    from cat_seg.data.resumable_stream import ResumableTrainingStream

    def mapper(record):
        return {"i": record["i"], "random": float(np.random.rand())}

    def batches(start, workers):
        stream = ResumableTrainingStream([{"i": i} for i in range(5)], mapper, seed=7,
                                         batch_size_per_process=2)
        stream.start_iter = start
        loader = DataLoader(stream, batch_size=2, num_workers=workers, collate_fn=lambda b: b)
        return list(islice(iter(loader), 6 - start))

    fresh = batches(0, 0)
    first_epoch = [r["i"] for batch in fresh for r in batch][:5]
    assert sorted(first_epoch) == [0, 1, 2, 3, 4]  # each record once per epoch, shuffled
    assert batches(3, 0) == fresh[3:]
    assert batches(3, 2) == fresh[3:]
