"""bfloat16 autocast on CPU: the real trainer trains the full AHS model with finite losses and
weights, and every angle/cosine of the AHS modules stays finite at its extremes.

Angles are computed in one place, :func:`geodesic_angle` (used by SDR, on the dense and the text
embeddings); HPA and AFR compare directions by cosine only. ``geodesic_angle`` alone is tested in
bf16 in test_hyperspherical_innovations.py; here the modules run under autocast, as the trainer
runs them, on near-identical and antipodal pairs (cosine exactly ±1 after rounding)."""
import argparse
import json
import math
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from cat_seg.engine.launch import setup
from cat_seg.engine.trainer import Trainer
from cat_seg.engine import MixedPrecisionTrainer, unwrap_model
from cat_seg.modeling.hyperspherical_innovations import AFR, HPA, SDR

DATASET = "bf16_three_class_train"
AUTOCAST = dict(device_type="cpu", dtype=torch.bfloat16)


def _pairs(n=6, dim=32):
    """(a, b) of shape (n, dim): rows 0-1 identical, 2-3 near-identical, 4-5 (near-)antipodal."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, dim, generator=generator)
    noise = 1e-4 * torch.randn(n, dim, generator=generator)
    b = torch.cat([a[:2], a[2:4] + noise[2:4], -a[4:5], -a[5:6] + noise[5:6]])
    return a, b


def _dense(rows):
    """(n, D) -> (1, D, 1, n): one image whose n patches are the rows."""
    return rows.T.reshape(1, rows.shape[1], 1, rows.shape[0])


def test_sdr_under_bf16_autocast_is_finite_at_zero_and_pi():
    sdr = SDR(max_iter=10)
    a, b = _pairs()
    student = _dense(a).requires_grad_(True)
    student_text = a.reshape(6, 1, 32).clone().requires_grad_(True)
    with torch.autocast(**AUTOCAST):
        loss = sdr(student.to(torch.bfloat16), _dense(b).to(torch.bfloat16), 0,
                   student_text.to(torch.bfloat16), b.reshape(6, 1, 32))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(student.grad).all() and torch.isfinite(student_text.grad).all()
    # Mean angle of 2 zero, 2 near-zero and 2 near-pi pairs, dense and text terms, weight w(0).
    assert loss.item() == pytest.approx(sdr.weight(0) * 2 * (2 * math.pi / 6), rel=2e-2)


def test_hpa_and_afr_under_bf16_autocast_with_features_on_and_opposite_prototypes():
    a, _ = _pairs()
    text = a[:3].reshape(3, 1, 32)  # three classes
    hpa = HPA(text, momentum=0.5).train()
    # Six patches: equal / near-equal / antipodal to the prototypes of classes 0, 1, 2.
    features = torch.cat([a[:3], a[:3] + 1e-4, -a[:3]]).T.reshape(1, 32, 1, 9)[..., :6]
    features = features.clone().requires_grad_(True)
    labels = torch.tensor([[0, 1, 2, 0, 1, 2]]).repeat_interleave(4, 1).repeat(4, 1)[None]
    afr = AFR(32)
    with torch.no_grad():
        afr.alpha.fill_(0.5)
    with torch.autocast(**AUTOCAST):
        rectified, certainty = afr(features.to(torch.bfloat16))
        loss = hpa(rectified, labels) + afr.loss(certainty, features, text, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(features.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in afr.parameters() if p.grad is not None)
    assert all(torch.isfinite(p.grad).all() for p in hpa.parameters() if p.grad is not None)
    assert torch.isfinite(hpa.prototypes).all()
    torch.testing.assert_close(hpa.prototypes.norm(dim=1), torch.ones(3))


@pytest.fixture()
def three_class_dataset(tmp_path):
    """Four 64x80 scenes of three classes (the text encoder runs over the vocabulary each step,
    so a small vocabulary keeps the test fast)."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(4):
        label = rng.integers(0, 3, (4, 5)).repeat(16, 0).repeat(16, 1).astype(np.uint8)
        image = (60 * label[..., None] + rng.integers(0, 60, (64, 80, 3))).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / f"image{i}.png")
        Image.fromarray(label).save(tmp_path / f"label{i}.png")
        records.append({"file_name": str(tmp_path / f"image{i}.png"), "height": 64, "width": 80,
                        "sem_seg_file_name": str(tmp_path / f"label{i}.png")})
    DatasetCatalog.register(DATASET, lambda: [dict(r) for r in records])
    MetadataCatalog.get(DATASET).set(stuff_classes=["sky", "grass", "water"], ignore_label=255,
                                     evaluator_type="sem_seg")
    yield
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


ITERATIONS = 12


@pytest.mark.slow
def test_bf16_autocast_trains_the_full_model_on_cpu(tmp_path, three_class_dataset):
    output = tmp_path / "run"
    args = argparse.Namespace(
        config_file="configs/synthetic/quickstart.yaml", resume=False, eval_only=False,
        num_gpus=1, num_machines=1, machine_rank=0, dist_url="auto",
        opts=["OUTPUT_DIR", str(output), "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0",
              "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", "bfloat16",
              "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(ITERATIONS),
              "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "1000",
              "DATASETS.TRAIN", f"('{DATASET}',)", "DATASETS.TEST", "()", "MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION", "64",
              "INPUT.MIN_SIZE_TRAIN", "(64, 80)", "INPUT.CROP.SIZE", "(64, 64)",
              "INPUT.SIZE_DIVISIBILITY", "64"])
    cfg = setup(args)
    trainer = Trainer(cfg)
    assert isinstance(trainer._trainer, MixedPrecisionTrainer)
    assert trainer._trainer.precision == torch.bfloat16
    assert not trainer._trainer.grad_scaler.is_enabled()  # bf16 needs no loss scaling

    model = unwrap_model(trainer.model)
    head_dtypes = []
    model.sem_seg_head.register_forward_hook(lambda m, i, out: head_dtypes.append(out.dtype))
    trainer.resume_or_load(resume=False)
    trainer.train()

    assert head_dtypes and set(head_dtypes) == {torch.bfloat16}  # autocast was really on
    with open(output / "metrics.json") as f:
        rows = [json.loads(line) for line in f if "total_loss" in line]
    assert rows and rows[-1]["iteration"] == ITERATIONS - 1
    for name in ("loss_sem_seg", "loss_proto", "loss_distill", "loss_rectify", "total_loss"):
        assert all(math.isfinite(r[name]) for r in rows), name
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), name
            assert tensor.dtype == torch.float32, name  # master weights stay fp32
    final = torch.load(os.path.join(output, "model_final.pth"), weights_only=True)
    assert final["iteration"] == ITERATIONS - 1


def test_test_precision_bf16_runs_inference_under_autocast_and_returns_float32(make_cfg):
    from detectron2.modeling import build_model

    opts = ["MODEL.DEVICE", "cpu", "MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION", "64",
            "MODEL.SEM_SEG_HEAD.CLASS_PAD_LEN", "8"]
    image = torch.randint(0, 256, (3, 64, 80), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    scores = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model = build_model(make_cfg("configs/synthetic/quickstart.yaml",
                                     opts + ["TEST.PRECISION", precision])).eval()
        model.set_vocabulary(["sky", "grass", "water"])
        head_dtypes = []
        model.sem_seg_head.register_forward_hook(lambda m, i, out: head_dtypes.append(out.dtype))
        with torch.no_grad():
            scores[precision] = model([{"image": image, "height": 64, "width": 80}])[0]["sem_seg"]
        assert set(head_dtypes) == {torch.float32 if precision == "float32" else torch.bfloat16}
    assert scores["bfloat16"].dtype == torch.float32 and torch.isfinite(scores["bfloat16"]).all()
    assert 0 < (scores["bfloat16"] - scores["float32"]).abs().max() < 0.05


def test_test_precision_is_checked():
    from cat_seg.config import build_config

    with pytest.raises(ValueError, match="TEST.PRECISION='half' is invalid.*float32"):
        build_config("configs/synthetic/quickstart.yaml", ["TEST.PRECISION", "half"])
