"""Two CPU ranks (gloo) through detectron2's ``launch`` and the real Trainer: the full AHS model
(HPA + SDR + AFR) stays identical on both ranks and trains like one process with the same global
batch.

Data order and augmentation differ between a 2-rank and a 1-rank run (each rank draws its own
images, crops and flips), so the data is made order- and flip-invariant: every record of the
training set is the same left-right symmetric image, crop and colour jitter are off, and the
shortest-edge resize has a single size. Then each rank's batch of 1 equals each half of the
single process's batch of 2, and with the same seed (DDP broadcasts rank 0's initial parameters
and buffers, HPA's prototypes included) the two runs compute the same losses up to float
summation order:

- step 0: same weights, same inputs; the only difference is that the 2-rank loss is the mean of
  two per-rank scalars and the 1-rank loss a mean over a batch of two: ``rtol=1e-5``.
- later steps: the gradients differ by rounding (DDP averages two per-rank gradients), and AdamW
  divides by ``sqrt(v) + eps``, which turns rounding-level differences of near-zero gradients into
  updates of up to ``lr``; over three steps at ``lr = 1e-3`` the losses stay within ``rtol=1e-3``.
"""
import argparse
import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import HookBase, launch
from detectron2.utils import comm
from PIL import Image

from cat_seg.engine.launch import setup
from cat_seg.engine.trainer import Trainer
from cat_seg.engine import unwrap_model

CONFIG = "configs/synthetic/quickstart.yaml"
DATASET = "identical_symmetric_train"
CLASSES = ["sky", "grass", "water"]
MAX_ITER = 3


def _write_symmetric_scene(root):
    """One 64x64 image and label, mirror-symmetric left-right (a flip changes nothing)."""
    rng = np.random.default_rng(0)
    label = np.zeros((64, 32), np.uint8)
    label[20:44] = 1
    label[44:] = 2
    label[30:34, 10:20] = 255
    image = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    image[label == 1] //= 2
    label = np.concatenate([label, label[:, ::-1]], axis=1)
    image = np.concatenate([image, image[:, ::-1]], axis=1)
    Image.fromarray(image).save(os.path.join(root, "image.png"))
    Image.fromarray(label).save(os.path.join(root, "label.png"))


def _register(root, copies=4):
    record = {"file_name": os.path.join(root, "image.png"),
              "sem_seg_file_name": os.path.join(root, "label.png"), "height": 64, "width": 64}
    if DATASET in DatasetCatalog.list():
        DatasetCatalog.remove(DATASET)
        MetadataCatalog.remove(DATASET)
    DatasetCatalog.register(DATASET, lambda: [dict(record) for _ in range(copies)])
    MetadataCatalog.get(DATASET).set(stuff_classes=CLASSES, ignore_label=255,
                                     evaluator_type="sem_seg")


class _LossRecorder(HookBase):
    """Rank 0 keeps the losses SimpleTrainer logged (already averaged over the ranks)."""

    def __init__(self):
        self.losses = []

    def after_step(self):
        if comm.is_main_process():
            history = self.trainer.storage.histories()
            self.losses.append({k: v.latest() for k, v in history.items() if k.startswith("loss")})


def _train(data_root, output, num_gpus):
    """Launched on every rank: train, then save this rank's model state (and rank 0's losses)."""
    torch.set_num_threads(1)  # two ranks share two cores
    _register(data_root)
    args = argparse.Namespace(
        config_file=CONFIG, resume=False, eval_only=False, num_gpus=num_gpus, num_machines=1,
        machine_rank=0, dist_url="auto",
        opts=["OUTPUT_DIR", output, "MODEL.DEVICE", "cpu", "SEED", "7",
              "DATALOADER.NUM_WORKERS", "0", "DATASETS.TRAIN", f"('{DATASET}',)",
              "DATASETS.TEST", "()", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(MAX_ITER),
              "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "1000",
              "MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION", "64", "INPUT.MIN_SIZE_TRAIN", "(64,)",
              "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.CROP.ENABLED", "False",
              "INPUT.COLOR_AUG_SSD", "False", "INPUT.SIZE_DIVISIBILITY", "64"])
    cfg = setup(args)
    trainer = Trainer(cfg)
    recorder = _LossRecorder()
    trainer.register_hooks([recorder])
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = unwrap_model(trainer.model)
    torch.save(model.state_dict(), os.path.join(output, f"rank{comm.get_rank()}.pth"))
    if comm.is_main_process():
        with open(os.path.join(output, "losses.json"), "w") as f:
            json.dump(recorder.losses, f)


@pytest.mark.slow
def test_two_gloo_ranks_stay_identical_and_match_one_process(tmp_path):
    _write_symmetric_scene(tmp_path)
    ddp_out, single_out = str(tmp_path / "ddp"), str(tmp_path / "single")
    launch(_train, 2, num_machines=1, machine_rank=0, dist_url="auto",
           args=(str(tmp_path), ddp_out, 2))

    rank0 = torch.load(os.path.join(ddp_out, "rank0.pth"), weights_only=True)
    rank1 = torch.load(os.path.join(ddp_out, "rank1.pth"), weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks"
    assert "prototype_alignment.prototypes" in rank0

    threads = torch.get_num_threads()
    try:
        launch(_train, 1, args=(str(tmp_path), single_out, 1))  # world size 1: in this process
    finally:
        torch.set_num_threads(threads)
    with open(os.path.join(ddp_out, "losses.json")) as f:
        ddp_losses = json.load(f)
    with open(os.path.join(single_out, "losses.json")) as f:
        single_losses = json.load(f)
    assert len(ddp_losses) == len(single_losses) == MAX_ITER
    assert set(ddp_losses[0]) == {"loss_sem_seg", "loss_proto", "loss_distill", "loss_rectify"}
    for step, (ddp, single) in enumerate(zip(ddp_losses, single_losses)):
        rtol = 1e-5 if step == 0 else 1e-3
        for name in single:
            assert ddp[name] == pytest.approx(single[name], rel=rtol, abs=1e-7), (step, name)
    # After training, the 2-rank prototypes equal the single process's (the all-reduced momentum
    # update sees the same per-class means); the losses changed, so the weights did train.
    single_state = torch.load(os.path.join(single_out, "rank0.pth"), weights_only=True)
    name = "prototype_alignment.prototypes"
    torch.testing.assert_close(rank0[name], single_state[name], rtol=1e-3, atol=1e-4)
    assert ddp_losses[0]["loss_sem_seg"] != ddp_losses[-1]["loss_sem_seg"]
