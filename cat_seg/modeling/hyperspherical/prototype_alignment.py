"""HPA — Hyperspherical Prototype Alignment: a training-only regulariser with momentum prototypes."""
import math
from typing import Dict, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.config import configurable
from torch import Tensor, nn

from ...data.vocabulary import dataset_vocabulary
from .contract import AHS_MODULE_REGISTRY, AHSContext, AHSModule
from .patch_labels import PATCH_IGNORE, patch_labels


def _normalised_class_embeddings(class_text_embeddings: Tensor) -> Tensor:
    """(C, D) or (C, P, D) text embeddings → (C, D) float32 unit vectors.

    Several prompt templates (P > 1) are reduced like CLIP's zero-shot prompt ensemble: each template's
    embedding is normalised, the P unit vectors are averaged and the mean is normalised again.
    """
    if class_text_embeddings.dim() not in (2, 3):
        raise ValueError(
            "class text embeddings must be (C, D) or (C, P, D) (classes, prompt templates, width), "
            f"got shape {tuple(class_text_embeddings.shape)}"
        )
    embeddings = F.normalize(class_text_embeddings.detach().float(), dim=-1)
    if embeddings.dim() == 3:
        embeddings = F.normalize(embeddings.mean(dim=1), dim=-1)
    return embeddings


@AHS_MODULE_REGISTRY.register()
class HypersphericalPrototypeAlignment(AHSModule):
    """HPA: pull each patch embedding towards the momentum prototype of its class on the sphere.

    Features ``f`` are the L2-normalised dense embeddings that enter the cost volume (after AFR),
    one per patch of the h×w grid. Per patch, ``y`` is its class from area-fraction labels
    (:func:`patch_labels`: majority class with fraction ≥ purity; other patches are ignored).
    With prototypes ``P`` (C×D, unit rows) and per-class temperatures ``τ_c``::

        L = λ_p · mean_{labelled patches} −log( exp(f·P_y / τ_y) / Σ_c exp(f·P_c / τ_c) )

    (the logit of class c is divided by its own τ_c, in the numerator and in every denominator term).
    ``τ_c`` is log-parametrised and bounded by a sigmoid, so it never leaves [τ_min, τ_max] and its
    gradient never vanishes at a clamp::

        log τ_c = log τ_min + (log τ_max − log τ_min) · σ(s_c),   s_c initialised so that τ_c = τ_init

    After the loss, in training mode, the prototypes of the classes present take a momentum step::

        P_c ← normalise( m·P_c + (1 − m)·normalise(mean{f : y = c}) )

    where the per-class sums and counts are first summed over all DDP ranks (``all_reduce``; only when
    torch.distributed is initialised), so every rank holds identical prototypes. The update is
    vectorised with ``index_add_`` (no per-class loop).

    Why the update sits at the end of ``forward`` (no separate call, nothing stashed between calls):
    the loss of step k only ever sees prototypes built from steps < k (never the batch it scores,
    which would let every patch match a prototype made of itself); the ``all_reduce`` collective runs
    exactly once per training step on every rank, as it must; and the loss is computed against a copy
    of ``P``, so the in-place update cannot invalidate the tensor autograd saved for backward.
    Consequently the model must call this module on every rank at every training step (it does
    whenever HPA is on), and never at test time: unseen vocabularies get no seen-class prototypes.

    State: ``prototypes`` is a buffer (C, D) float32 (saved in checkpoints, not trained by the
    optimiser); ``temperature_logits`` (C,) are the only parameters. Prototypes are initialised from
    the normalised text embeddings of the training classes (:meth:`init_prototypes`).
    """

    attribute = "prototype_alignment"
    short_name = "HPA"
    switch = "USE_PROTOTYPE_ALIGNMENT"
    loss_weight_keys = ("PROTOTYPE_LOSS_WEIGHT",)

    @classmethod
    def add_config(cls, cfg) -> None:
        head = cfg.MODEL.SEM_SEG_HEAD
        # HPA: cross-entropy of the patch embeddings against momentum class prototypes (training only).
        head.USE_PROTOTYPE_ALIGNMENT = False
        # λ_p, weight of loss_proto.
        head.PROTOTYPE_LOSS_WEIGHT = 0.1
        # m of the prototype update P_c ← normalise(m·P_c + (1 − m)·normalise(batch mean of class c)).
        head.PROTOTYPE_MOMENTUM = 0.99
        # Initial value of the per-class learnable temperatures τ_c.
        head.PROTOTYPE_TEMPERATURE_INIT = 0.07
        # Lower bound of τ_c (sigmoid-bounded in log space; needs MIN < INIT < MAX).
        head.PROTOTYPE_TEMPERATURE_MIN = 0.01
        # Upper bound of τ_c.
        head.PROTOTYPE_TEMPERATURE_MAX = 1.0

    @classmethod
    def build(cls, cfg, backbone: nn.Module, train_dataset: Optional[str]) -> "HypersphericalPrototypeAlignment":
        """Prototypes start from the text embeddings of the training dataset's classes."""
        if train_dataset is None:
            raise ValueError("USE_PROTOTYPE_ALIGNMENT needs DATASETS.TRAIN: its prototypes "
                             "start from the training classes' text embeddings")
        with torch.no_grad():
            text = backbone.encode_text(dataset_vocabulary(train_dataset))
        return cls(cfg, class_text_embeddings=text)

    @configurable
    def __init__(
        self,
        class_text_embeddings: Tensor,
        *,
        loss_weight: float = 0.1,
        momentum: float = 0.99,
        temperature_init: float = 0.07,
        temperature_min: float = 0.01,
        temperature_max: float = 1.0,
        purity: float = 0.75,
        ignore_value: int = 255,
    ):
        """
        Args:
            class_text_embeddings: (C, D) or (C, P, D) text embeddings of the C training classes, in
                the order of the training labels; they initialise the prototypes.
            loss_weight: λ_p.
            momentum: m in [0, 1]; 1 freezes the prototypes at their text initialisation.
            temperature_init, temperature_min, temperature_max: τ at init and its bounds,
                0 < τ_min < τ_init < τ_max.
            purity: patch-label purity threshold in (0.5, 1] (see :func:`patch_labels`).
            ignore_value: label of unlabelled pixels in the label maps passed to :meth:`forward`.
        """
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"prototype momentum must be in [0, 1], got {momentum}")
        if not 0.0 < temperature_min < temperature_init < temperature_max:
            raise ValueError(
                "prototype temperatures need 0 < MIN < INIT < MAX, got "
                f"min={temperature_min}, init={temperature_init}, max={temperature_max}"
            )
        if not 0.5 < purity <= 1.0:
            raise ValueError(f"patch-label purity must be in (0.5, 1], got {purity}")
        prototypes = _normalised_class_embeddings(class_text_embeddings)
        self.loss_weight = float(loss_weight)
        self.momentum = float(momentum)
        self.purity = float(purity)
        self.ignore_value = int(ignore_value)
        self.log_temperature_min = math.log(temperature_min)
        self.log_temperature_max = math.log(temperature_max)
        self.register_buffer("prototypes", prototypes)
        fraction = (math.log(temperature_init) - self.log_temperature_min) / (
            self.log_temperature_max - self.log_temperature_min
        )
        self.temperature_logits = nn.Parameter(
            torch.full((prototypes.shape[0],), math.log(fraction / (1.0 - fraction)))
        )

    @classmethod
    def from_config(cls, cfg, class_text_embeddings: Tensor):
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "class_text_embeddings": class_text_embeddings,
            "loss_weight": head.PROTOTYPE_LOSS_WEIGHT,
            "momentum": head.PROTOTYPE_MOMENTUM,
            "temperature_init": head.PROTOTYPE_TEMPERATURE_INIT,
            "temperature_min": head.PROTOTYPE_TEMPERATURE_MIN,
            "temperature_max": head.PROTOTYPE_TEMPERATURE_MAX,
            "purity": head.PATCH_LABEL_PURITY,
            "ignore_value": head.IGNORE_VALUE,
        }

    @property
    def num_classes(self) -> int:
        return self.prototypes.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.prototypes.shape[1]

    def temperatures(self) -> Tensor:
        """(C,) float32 per-class temperatures τ_c in [τ_min, τ_max]."""
        span = self.log_temperature_max - self.log_temperature_min
        return torch.exp(self.log_temperature_min + span * torch.sigmoid(self.temperature_logits.float()))

    @torch.no_grad()
    def init_prototypes(self, class_text_embeddings: Tensor) -> None:
        """Reset ``P`` to the normalised (template-averaged) text embeddings, (C, D) or (C, P, D)."""
        prototypes = _normalised_class_embeddings(class_text_embeddings)
        if prototypes.shape != self.prototypes.shape:
            raise ValueError(
                f"text embeddings give prototypes of shape {tuple(prototypes.shape)}, this HPA holds "
                f"{tuple(self.prototypes.shape)} (classes × width); encode exactly the training classes"
            )
        self.prototypes.copy_(prototypes)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Weighted prototype loss; in training mode, then the momentum update of the prototypes.

        Args:
            features: (B, D, h, w) dense embeddings entering the cost volume (normalised here).
            labels: (B, H, W) ground-truth class indices of the training vocabulary at label
                resolution (H ≥ h, W ≥ w), ``ignore_value`` where unlabelled.

        Returns:
            scalar float32 loss ``λ_p · L`` (0, still connected to the temperatures, when no patch of
            the batch has a pure label).
        """
        if features.dim() != 4 or features.shape[1] != self.embed_dim:
            raise ValueError(
                f"features must be (B, {self.embed_dim}, h, w) dense embeddings, got {tuple(features.shape)}"
            )
        if labels.shape[0] != features.shape[0]:
            raise ValueError(f"{labels.shape[0]} label maps for a batch of {features.shape[0]} feature maps")
        targets = patch_labels(
            labels, features.shape[-2:], self.num_classes, self.purity, self.ignore_value
        ).flatten()  # (N,), N = B·h·w
        # bf16 logits divided by τ ≈ 0.07 would be off by ~0.4: score in float32 even under autocast.
        with torch.autocast(device_type=features.device.type, enabled=False):
            directions = F.normalize(features.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, self.embed_dim)
            # A copy: the in-place update below must not touch the tensor autograd saved.
            logits = directions @ self.prototypes.float().clone().t() / self.temperatures()  # (N, C)
            loss_sum = F.cross_entropy(logits, targets, ignore_index=PATCH_IGNORE, reduction="sum")
        num_labelled = (targets != PATCH_IGNORE).sum().clamp(min=1)
        loss = self.loss_weight * loss_sum / num_labelled
        if self.training:
            self.update_prototypes(directions.detach(), targets)
        return loss

    def losses(self, context: AHSContext) -> Dict[str, Tensor]:
        """``loss_proto`` of the embeddings that entered the cost volume (after any feature hook)."""
        return {"loss_proto": self(context.rectified, context.targets)}

    @torch.no_grad()
    def update_prototypes(self, directions: Tensor, targets: Tensor) -> None:
        """Momentum step of the prototypes of the classes present on any rank.

        Args:
            directions: (N, D) unit feature vectors.
            targets: (N,) their classes, PATCH_IGNORE for unlabelled ones.

        A collective when torch.distributed is initialised: every rank must call it in the same step.
        """
        sums_and_counts = self.class_sums_and_counts(directions, targets)  # (C, D + 1)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums_and_counts)
        sums, counts = sums_and_counts[:, :-1], sums_and_counts[:, -1]
        current = self.prototypes.float()
        # normalise(mean) = normalise(sum) for count > 0: the count only decides presence.
        moved = F.normalize(self.momentum * current + (1.0 - self.momentum) * F.normalize(sums, dim=1), dim=1)
        self.prototypes.copy_(torch.where((counts > 0).unsqueeze(1), moved, current))

    def class_sums_and_counts(self, directions: Tensor, targets: Tensor) -> Tensor:
        """(C, D + 1) float32: per class, the sum of its directions and (last column) their count."""
        labelled = (targets != PATCH_IGNORE).unsqueeze(1).float()  # (N, 1)
        rows = torch.cat([directions.float() * labelled, labelled], dim=1)  # ignored rows are all 0
        stats = directions.new_zeros((self.num_classes, self.embed_dim + 1), dtype=torch.float32)
        # Ignored rows are zero, so sending them to class 0 adds nothing (and avoids a host sync).
        return stats.index_add_(0, targets.clamp(min=0), rows)

    def extra_repr(self) -> str:
        return (
            f"classes={self.num_classes}, dim={self.embed_dim}, weight={self.loss_weight}, "
            f"momentum={self.momentum}, purity={self.purity}, "
            f"tau=[{math.exp(self.log_temperature_min):g}, {math.exp(self.log_temperature_max):g}]"
        )
