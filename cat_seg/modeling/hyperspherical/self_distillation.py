"""SDR — Self-Distillation Regulariser: keep the fine-tuned CLIP close to the pretrained one, on the sphere."""
import itertools
import math
from typing import Dict, Hashable, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.utils.events import get_event_storage
from torch import Tensor, nn

from .contract import AHS_MODULE_REGISTRY, AHSContext, AHSModule
from .geodesic import geodesic_angle


@AHS_MODULE_REGISTRY.register()
class SelfDistillationRegularizer(AHSModule):
    """SDR: geodesic distance between the student's and the pretrained teacher's embeddings.

    The teacher is the same CLIP with its adapters bypassed (the frozen pretrained weights), run
    without gradient; no second copy of CLIP exists. With ``θ`` the geodesic angle
    (:func:`geodesic_angle`, stable at θ = 0, which is where training starts)::

        L = w(t) · ( mean_{b,h,w} θ(f_s, f_t)  [+ mean_{T,P} θ(e_s, e_t)  if distil_text] )
        w(t) = w_final + ½ (w_init − w_final) (1 + cos(π · min(t, T) / T))

    ``f`` (B, D, h, w) dense image embeddings (angle over D), ``e`` (T, P, D) text embeddings, ``t``
    the trainer's iteration (passed in, so a resumed run continues the schedule where it stopped),
    ``T`` = SOLVER.MAX_ITER. Past T the weight stays w_final. No parameters.

    :meth:`teacher_pass` runs the teacher with the required semantics. It caches the teacher's text
    embeddings: they depend only on the class names and the frozen (non-trainable) CLIP weights, so
    the cache key is the vocabulary plus the identity and version counter of every frozen tensor of
    the backbone. Another vocabulary, a state-dict load, an in-place edit or a move to another device
    recomputes them; the trainable adapters, updated at every step, do not. One vocabulary is kept.
    (The backbone's own text cache cannot serve here: it is keyed on all weights, adapters included.)
    """

    attribute = "self_distillation"
    short_name = "SDR"
    switch = "USE_SELF_DISTILLATION"
    loss_weight_keys = ("DISTILL_LOSS_WEIGHT", "DISTILL_LOSS_WEIGHT_FINAL")

    @classmethod
    def add_config(cls, cfg) -> None:
        head = cfg.MODEL.SEM_SEG_HEAD
        # SDR: geodesic distillation from the same CLIP with adapters bypassed (training only).
        head.USE_SELF_DISTILLATION = False
        # w_init, weight of loss_distill at iteration 0 (cosine schedule down to the final weight).
        head.DISTILL_LOSS_WEIGHT = 0.1
        # w_final, weight of loss_distill at SOLVER.MAX_ITER.
        head.DISTILL_LOSS_WEIGHT_FINAL = 0.01
        # Also distil the text embeddings (teacher text cached per vocabulary), not only the dense ones.
        head.DISTILL_TEXT = True

    @classmethod
    def build(cls, cfg, backbone: nn.Module, train_dataset: Optional[str]) -> "SelfDistillationRegularizer":
        if not backbone.has_adapters:
            raise ValueError(
                "USE_SELF_DISTILLATION distils from CLIP with its adapters bypassed, but "
                f"CLIP_FINETUNE={cfg.MODEL.SEM_SEG_HEAD.CLIP_FINETUNE!r} builds no adapters (the "
                "teacher would be the student); use CLIP_FINETUNE oft_both or switch SDR off")
        return cls(cfg)

    @configurable
    def __init__(
        self, *, max_iter: int, weight_init: float = 0.1, weight_final: float = 0.01, distill_text: bool = True
    ):
        """
        Args:
            max_iter: T, the iteration at which the weight reaches ``weight_final``.
            weight_init: w_init, the weight at iteration 0.
            weight_final: w_final, the weight from iteration T on.
            distill_text: also distil the text embeddings.
        """
        super().__init__()
        if max_iter <= 0:
            raise ValueError(f"max_iter (SOLVER.MAX_ITER) must be positive, got {max_iter}")
        self.max_iter = int(max_iter)
        self.weight_init = float(weight_init)
        self.weight_final = float(weight_final)
        self.distill_text = bool(distill_text)
        self._teacher_text_key: Optional[Hashable] = None
        self._teacher_text: Optional[Tensor] = None

    @classmethod
    def from_config(cls, cfg):
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "max_iter": cfg.SOLVER.MAX_ITER,
            "weight_init": head.DISTILL_LOSS_WEIGHT,
            "weight_final": head.DISTILL_LOSS_WEIGHT_FINAL,
            "distill_text": head.DISTILL_TEXT,
        }

    def weight(self, iteration: int) -> float:
        """w(t) of the cosine schedule."""
        if iteration < 0:
            raise ValueError(f"iteration must be ≥ 0, got {iteration}")
        progress = min(int(iteration), self.max_iter) / self.max_iter
        return self.weight_final + 0.5 * (self.weight_init - self.weight_final) * (1.0 + math.cos(math.pi * progress))

    def forward(
        self,
        student_features: Tensor,
        teacher_features: Tensor,
        iteration: int,
        student_text: Optional[Tensor] = None,
        teacher_text: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            student_features, teacher_features: (B, D, h, w) dense image embeddings (any scale).
            iteration: t, the trainer's current iteration.
            student_text, teacher_text: (T, P, D) text embeddings; required iff distil_text.

        Returns:
            scalar float32 loss (float64 for float64 inputs).
        """
        _check_pair("dense features", student_features, teacher_features)
        loss = geodesic_angle(student_features, teacher_features, dim=1).mean()
        if self.distill_text:
            if student_text is None or teacher_text is None:
                raise ValueError(
                    "SDR distils the text embeddings (MODEL.SEM_SEG_HEAD.DISTILL_TEXT): pass student_text "
                    "and teacher_text"
                )
            _check_pair("text embeddings", student_text, teacher_text)
            loss = loss + geodesic_angle(student_text, teacher_text.to(student_text.device), dim=-1).mean()
        elif student_text is not None or teacher_text is not None:
            raise ValueError(
                "SDR does not distil text (MODEL.SEM_SEG_HEAD.DISTILL_TEXT is off): do not pass text "
                "embeddings, and skip computing the teacher's"
            )
        return self.weight(iteration) * loss

    def losses(self, context: AHSContext) -> Dict[str, Tensor]:
        """``loss_distill`` of the backbone's own dense embeddings (before any feature hook) and,
        with distil_text, of the student's text embeddings, against the teacher's."""
        teacher_dense, teacher_text = self.teacher_pass(context.backbone, context.images, context.class_names)
        student_text = context.text if self.distill_text else None
        loss = self(context.features, teacher_dense, context.iteration, student_text, teacher_text)
        self._log_dose(context, teacher_dense, teacher_text)
        return {"loss_distill": loss}

    @torch.no_grad()
    def _log_dose(self, context: AHSContext, teacher_dense: Tensor, teacher_text: Optional[Tensor]) -> None:
        """Log what SDR pulls against: the mean student–teacher angle of the dense embeddings (and of
        the text embeddings), in degrees, and the loss weight w(t), into the trainer's event storage
        (metrics.json; tools/research_loop.py and tools/mechanism_figure.py read them). Nothing outside a trainer."""
        try:
            storage = get_event_storage()
        except AssertionError:  # no trainer running (tests, tools)
            return
        degrees = 180.0 / math.pi
        storage.put_scalar("sdr/angle_dense_deg", degrees * float(
            geodesic_angle(context.features.float(), teacher_dense.float(), dim=1).mean()))
        if teacher_text is not None:
            storage.put_scalar("sdr/angle_text_deg", degrees * float(geodesic_angle(
                context.text.float(), teacher_text.to(context.text.device).float(), dim=-1).mean()))
        storage.put_scalar("sdr/weight", self.weight(context.iteration))

    @torch.no_grad()
    def teacher_pass(
        self, backbone: nn.Module, images: Tensor, class_names: Optional[Sequence[str]] = None
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """The teacher's embeddings: ``backbone`` run inside ``backbone.adapters_bypassed()``, no grad.

        ``backbone`` follows the CLIPBackbone contract (``has_adapters``, ``adapters_bypassed()``,
        ``encode_image``, ``encode_text``) and must carry adapters: without them the "teacher" would
        be the student itself. Its train/eval mode is left alone (eval mode merges adapters): CLIP has no
        dropout or batch norm, so its forward is the eval-mode one in either mode. The teacher's
        guidance features are discarded; the student's, returned by the student's own pass, are
        untouched.

        Args:
            images: (B, 3, R, R) the student's CLIP input.
            class_names: the vocabulary, needed iff distil_text.

        Returns:
            dense: (B, D, h, w) teacher dense embeddings.
            text: (T, P, D) teacher text embeddings (cached per vocabulary), or None without distil_text.
        """
        if not backbone.has_adapters:
            raise ValueError(
                "SDR's teacher is CLIP with its adapters bypassed, but this CLIP has no adapters, so the "
                "teacher would be the student itself: use MODEL.SEM_SEG_HEAD.CLIP_FINETUNE 'oft_both' "
                "or switch off USE_SELF_DISTILLATION"
            )
        if self.distill_text and class_names is None:
            raise ValueError("SDR distils the text embeddings: pass the class names to teacher_pass")
        with backbone.adapters_bypassed():
            dense, _teacher_guidance = backbone.encode_image(images)
            text = None
            if self.distill_text:
                key = (tuple(class_names), _frozen_weights_key(backbone))
                if self._teacher_text is None or self._teacher_text_key != key:
                    self._teacher_text = backbone.encode_text(list(class_names)).detach()
                    self._teacher_text_key = key
                text = self._teacher_text
        return dense, text

    def extra_repr(self) -> str:
        return (
            f"w_init={self.weight_init}, w_final={self.weight_final}, max_iter={self.max_iter}, "
            f"distill_text={self.distill_text}"
        )


def _frozen_weights_key(backbone: nn.Module) -> Hashable:
    """Changes whenever a non-trainable tensor of ``backbone`` is replaced, moved or edited in place."""
    tensors = itertools.chain(backbone.parameters(), backbone.buffers())
    return tuple((t.data_ptr(), t._version) for t in tensors if not t.requires_grad)


def _check_pair(what: str, student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher {what} differ in shape: {tuple(student.shape)} vs {tuple(teacher.shape)}"
        )
    if teacher.requires_grad:
        raise ValueError(
            f"teacher {what} require grad: compute them under torch.no_grad() (see SDR.teacher_pass), "
            "the teacher is a fixed target"
        )
