"""What each module does inside a trained run, as figures (tools/mechanism_figure.py).

For a run folder (config.yaml + model_final.pth, e.g. one of tools/research_loop.py's) it measures
on the synthetic world's validation images:

* **forgetting** — how far fine-tuning moved CLIP: the mean geodesic angle (degrees) between the
  fine-tuned CLIP's dense embeddings and the pretrained CLIP's on the same images, separately for
  held-out (Syn-unseen) and seen (Syn-seen) images; and CLIP's *own* dense zero-shot mIoU (patch–text
  argmax, no head) on Syn-unseen and its mIoU(U) on Syn-gen, fine-tuned against pretrained.
* **HPA** — the separation of its prototypes: their pairwise angles (min, mean), and how far each
  moved from its text initialisation (the pretrained CLIP's text embedding of its class).
* **AFR** — its gate: the learnt α, and the mean gate and certainty on seen and held-out images
  (a gate that closes on held-out patches would damp exactly the features transfer needs).
* **SDR** — the logged dose over training (weight w(t) and student–teacher angles, metrics.json).

:func:`mechanism_figures` returns the numbers and draws them into one PNG of four panels.
"""
import json
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..config import build_config
from ..data.label_io import read_image_rgb
from ..engine.checkpointer import AtomicCheckpointer
from ..engine.trainer import Trainer
from ..evaluation.zero_shot import _clip_input, dense_zero_shot, pretrained_clip
from ..modeling.hyperspherical.geodesic import geodesic_angle
from .research_loop import last_figures

_DEGREES = 180.0 / math.pi


@torch.no_grad()
def feature_drift(backbone, dataset_name: str, limit: int = 50) -> float:
    """Mean geodesic angle (degrees) between the backbone's dense embeddings and the pretrained
    CLIP's, over the patches of the first ``limit`` images of a dataset."""
    reference = pretrained_clip(backbone)
    angles = []
    for record in DatasetCatalog.get(dataset_name)[:limit]:
        image = _clip_input(backbone, read_image_rgb(record["file_name"]))
        tuned, _ = backbone.encode_image(image)
        with reference.adapters_bypassed():
            frozen, _ = reference.encode_image(image)
        angles.append(geodesic_angle(tuned.float(), frozen.float(), dim=1).mean().item())
    return _DEGREES * float(np.mean(angles))


@torch.no_grad()
def prototype_separation(model, class_names: Sequence[str]) -> Optional[dict]:
    """HPA's prototypes of the training classes ``class_names``: pairwise angles and drift from
    the pretrained text embeddings (degrees)."""
    hpa = getattr(model, "prototype_alignment", None)
    if hpa is None:
        return None
    prototypes = F.normalize(hpa.prototypes.float(), dim=-1)  # (C, D)
    cos = prototypes @ prototypes.T
    off_diagonal = ~torch.eye(len(cos), dtype=torch.bool)
    pairwise = _DEGREES * geodesic_angle(prototypes[:, None], prototypes[None], dim=-1)[off_diagonal]
    reference = pretrained_clip(model.backbone)
    with reference.adapters_bypassed():
        text = F.normalize(reference.encode_text(list(class_names)).mean(1).float(), dim=-1)
    moved = _DEGREES * geodesic_angle(prototypes, text.to(prototypes.device), dim=-1)
    return {"min_pairwise_deg": float(pairwise.min()), "mean_pairwise_deg": float(pairwise.mean()),
            "moved_from_text_deg": [float(v) for v in moved], "cosines": cos.tolist()}


@torch.no_grad()
def gate_statistics(model, dataset_name: str, limit: int = 50) -> Optional[dict]:
    """AFR's α and the mean gate and certainty over the patches of a dataset's first images."""
    afr = getattr(model, "feature_rectification", None)
    if afr is None:
        return None
    gates, certainties = [], []
    for record in DatasetCatalog.get(dataset_name)[:limit]:
        dense, _ = model.backbone.encode_image(_clip_input(model.backbone,
                                                           read_image_rgb(record["file_name"])))
        gate, logits = afr.gate(dense)
        gates.append(gate.mean().item())
        certainties.append(torch.sigmoid(logits).mean().item())
    return {"alpha": float(afr.alpha), "gate_mean": float(np.mean(gates)),
            "certainty_mean": float(np.mean(certainties))}


def sdr_curve(run_dir: str) -> List[list]:
    """[(iteration, weight, dense angle°, text angle°)] logged by SDR in RUN/metrics.json
    (empty without SDR)."""
    path = os.path.join(run_dir, "metrics.json")
    return last_figures(path)["sdr_curve"] if os.path.isfile(path) else []


def load_run(run_dir: str):
    """The model of a run folder (its config.yaml and model_final.pth), in evaluation mode, and
    its training classes."""
    cfg = build_config(os.path.join(run_dir, "config.yaml"), ["MODEL.DEVICE", "cpu"])
    model = Trainer.build_model(cfg)
    AtomicCheckpointer(model).load(os.path.join(run_dir, "model_final.pth"))
    return model.eval(), list(MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).stuff_classes)


def mechanism_figures(run_dir: str, output: Optional[str] = None) -> Dict[str, object]:
    """Measure the run (see the module docstring), write RUN/mechanisms.json and the PNG
    (``output``, default RUN/mechanisms.png); returns the numbers."""
    model, train_classes = load_run(run_dir)
    backbone = model.backbone
    figures: Dict[str, object] = {
        "drift_unseen_deg": feature_drift(backbone, "synthetic_unseen_val"),
        "drift_seen_deg": feature_drift(backbone, "synthetic_seen_val"),
    }
    for label, pretrained in (("pretrained", True), ("finetuned", False)):
        own = dense_zero_shot(backbone, "synthetic_unseen_val", pretrained=pretrained)
        gen = dense_zero_shot(backbone, "synthetic_generalized_val", pretrained=pretrained)
        figures[f"clip_zero_shot_{label}"] = {"Syn-unseen mIoU": own["mIoU"],
                                              "Syn-gen mIoU(U)": gen["mIoU_unseen"],
                                              "Syn-gen held-out px -> seen %": gen["unseen_as_seen"]}
    figures["hpa"] = prototype_separation(model, train_classes)
    figures["afr"] = {name: gate_statistics(model, dataset)
                      for name, dataset in (("seen", "synthetic_seen_val"),
                                            ("unseen", "synthetic_unseen_val"))}
    if figures["afr"]["seen"] is None:
        figures["afr"] = None
    figures["sdr_curve"] = sdr_curve(run_dir)
    with open(os.path.join(run_dir, "mechanisms.json"), "w") as f:
        json.dump(figures, f, indent=1)
    draw(figures, output or os.path.join(run_dir, "mechanisms.png"), title=run_dir)
    return figures


def draw(figures: dict, path: str, title: str = "") -> None:
    """Four panels: forgetting, HPA prototypes, AFR gate, SDR dose (a panel says "off" when its
    module is not in the run)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    ax = axes[0]
    pre, tuned = figures["clip_zero_shot_pretrained"], figures["clip_zero_shot_finetuned"]
    keys = list(pre)
    x = np.arange(len(keys))
    ax.bar(x - 0.2, [pre[k] for k in keys], 0.4, label="pretrained CLIP")
    ax.bar(x + 0.2, [tuned[k] for k in keys], 0.4, label="fine-tuned CLIP")
    ax.set_xticks(x, [k.replace(" ", "\n", 1) for k in keys], fontsize=8)
    ax.set_title(f"forgetting: drift {figures['drift_unseen_deg']:.1f}° held-out, "
                 f"{figures['drift_seen_deg']:.1f}° seen", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    if figures["hpa"]:
        image = ax.imshow(np.array(figures["hpa"]["cosines"]), vmin=-1, vmax=1, cmap="coolwarm")
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title(f"HPA prototypes cos: min angle {figures['hpa']['min_pairwise_deg']:.0f}°, "
                     f"moved {np.mean(figures['hpa']['moved_from_text_deg']):.1f}° from text",
                     fontsize=9)
    else:
        ax.text(0.5, 0.5, "HPA off", ha="center", va="center")
        ax.set_axis_off()
    ax = axes[2]
    if figures["afr"]:
        seen, unseen = figures["afr"]["seen"], figures["afr"]["unseen"]
        ax.bar([0, 1, 3, 4], [seen["gate_mean"], unseen["gate_mean"], seen["certainty_mean"],
                              unseen["certainty_mean"]], color=["C0", "C1", "C0", "C1"])
        ax.set_xticks([0, 1, 3, 4], ["gate\nseen", "gate\nheld-out", "certainty\nseen",
                                     "certainty\nheld-out"], fontsize=8)
        ax.set_title(f"AFR: α = {seen['alpha']:.3f}", fontsize=9)
    else:
        ax.text(0.5, 0.5, "AFR off", ha="center", va="center")
        ax.set_axis_off()
    ax = axes[3]
    curve = figures["sdr_curve"]
    if curve:
        it = [c[0] for c in curve]
        ax.plot(it, [c[2] for c in curve], label="dense angle (°)")
        if curve[0][3] is not None:
            ax.plot(it, [c[3] for c in curve], label="text angle (°)")
        ax.set_xlabel("iteration")
        twin = ax.twinx()
        twin.plot(it, [c[1] for c in curve], "k--", label="w(t)")
        twin.set_ylabel("weight")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title("SDR dose over training", fontsize=9)
    else:
        ax.text(0.5, 0.5, "SDR off", ha="center", va="center")
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
