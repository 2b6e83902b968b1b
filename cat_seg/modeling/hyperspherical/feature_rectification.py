"""AFR — Adaptive Feature Rectification: a gated, certainty-weighted residual on the dense embeddings."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import Tensor, nn

from .contract import AHS_MODULE_REGISTRY, AHSContext, AHSModule
from .patch_labels import PATCH_IGNORE, patch_labels


@AHS_MODULE_REGISTRY.register()
class AdaptiveFeatureRectification(AHSModule):
    """AFR: re-weight the dense CLIP embeddings by channel, position and certainty, before the cost volume.

    With ``f`` (B, D, h, w) the dense embeddings and ``x = √D · f/‖f‖`` (per patch, scale-free input
    of the three small heads)::

        a_ch(f)  = W₂ GELU(W₁ mean_{h,w} x)                      (B, D, 1, 1)  channel attention (SE-style)
        a_sp(f)  = conv_k×k([mean_D x, max_D x])                 (B, 1, h, w)  spatial attention (CBAM-style)
        u(f)     = conv₁ₓ₁(GELU(conv₁ₓ₁(x)))                     (B, 1, h, w)  certainty logit
        gate     = σ(a_ch) ⊙ σ(a_sp) ⊙ σ(u)                      certainty σ(u) ∈ (0, 1]
        f'       = f + α·(gate ⊙ f − f)                          α: learnable scalar, initialised to 0

    so at initialisation ``f' = f`` exactly (bit for bit), and uncertain patches (small σ(u)) are
    down-weighted as α grows. The same module is applied in training and in every inference path.

    Gradient flow: every parameter is in the autograd graph of ``f'`` (through α), so with DDP
    ``find_unused_parameters=False`` works; at α = 0 the attention heads get a zero gradient from the
    main loss until α moves, while α does get one, and the certainty head is trained from the start
    by :meth:`loss`.

    Certainty supervision (:meth:`loss`, weight λ_r): per labelled patch, target = 1 if the prediction
    of the cost volume *before* rectification is right, else 0::

        pred(p) = argmax_t mean_P cos(f(p), t_{t,P})     (template-averaged cost volume)
        L_r = λ_r · mean_{labelled p} BCE(σ(u(p)), [pred(p) = y(p)])

    with ``y(p)`` the same area-fraction patch label as HPA's (:func:`patch_labels`: majority class
    whose fraction ≥ purity; other patches are not supervised).

    Parameters: 2·D·r + r + D (channel) + 2·k² + 1 (spatial) + D·r + 2·r + 1 (certainty) + 1 (α);
    with r = 32, k = 7: 49,861 at D = 512 and 74,693 at D = 768.
    """

    attribute = "feature_rectification"
    short_name = "AFR"
    switch = "USE_FEATURE_RECTIFICATION"
    loss_weight_keys = ("RECTIFY_LOSS_WEIGHT",)

    @classmethod
    def add_config(cls, cfg) -> None:
        head = cfg.MODEL.SEM_SEG_HEAD
        # AFR: gated, certainty-weighted residual on the dense embeddings (training and inference).
        head.USE_FEATURE_RECTIFICATION = False
        # λ_r, weight of loss_rectify (certainty vs "pre-rectification prediction was right").
        head.RECTIFY_LOSS_WEIGHT = 0.05
        # Hidden width of AFR's channel-attention and certainty heads (32: 49,861 parameters at D=512).
        head.RECTIFY_HIDDEN_DIM = 32

    @classmethod
    def build(cls, cfg, backbone: nn.Module, train_dataset: Optional[str]) -> "AdaptiveFeatureRectification":
        return cls(cfg, embed_dim=backbone.embed_dim)

    @configurable
    def __init__(
        self,
        embed_dim: int,
        *,
        hidden_dim: int = 32,
        spatial_kernel_size: int = 7,
        loss_weight: float = 0.05,
        purity: float = 0.75,
        ignore_value: int = 255,
    ):
        """
        Args:
            embed_dim: D, width of the dense embeddings.
            hidden_dim: r, hidden width of the channel-attention and certainty heads.
            spatial_kernel_size: k (odd), receptive field of the spatial attention on the patch grid.
            loss_weight: λ_r of the certainty loss.
            purity: patch-label purity threshold in (0.5, 1] (see :func:`patch_labels`).
            ignore_value: label of unlabelled pixels in the label maps passed to :meth:`loss`.
        """
        super().__init__()
        if embed_dim <= 0 or hidden_dim <= 0:
            raise ValueError(f"embed_dim and hidden_dim must be positive, got {embed_dim} and {hidden_dim}")
        if spatial_kernel_size <= 0 or spatial_kernel_size % 2 == 0:
            raise ValueError(f"spatial_kernel_size must be odd (same-size output), got {spatial_kernel_size}")
        if not 0.5 < purity <= 1.0:
            raise ValueError(f"patch-label purity must be in (0.5, 1], got {purity}")
        self.embed_dim = int(embed_dim)
        self.loss_weight = float(loss_weight)
        self.purity = float(purity)
        self.ignore_value = int(ignore_value)
        self.channel_attention = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, embed_dim)
        )
        self.spatial_attention = nn.Conv2d(2, 1, spatial_kernel_size, padding=spatial_kernel_size // 2)
        self.certainty_head = nn.Sequential(
            nn.Conv2d(embed_dim, hidden_dim, 1), nn.GELU(), nn.Conv2d(hidden_dim, 1, 1)
        )
        self.alpha = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_config(cls, cfg, embed_dim: int):
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "embed_dim": embed_dim,
            "hidden_dim": head.RECTIFY_HIDDEN_DIM,
            "loss_weight": head.RECTIFY_LOSS_WEIGHT,
            "purity": head.PATCH_LABEL_PURITY,
            "ignore_value": head.IGNORE_VALUE,
        }

    def forward(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            features: (B, D, h, w) dense embeddings (any float dtype, autocast-safe).

        Returns:
            rectified: (B, D, h, w) ``f'``, the embeddings for the cost volume.
            certainty_logits: (B, h, w) ``u``; certainty = sigmoid(u). Only :meth:`loss` needs them.
        """
        gate, certainty_logits = self.gate(features)
        rectified = features + self.alpha * (gate * features - features)
        return rectified, certainty_logits

    def gate(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        """``gate = σ(channel) ⊙ σ(spatial) ⊙ σ(u)`` (B, D, h, w) and the certainty logits ``u``
        (B, h, w) of (B, D, h, w) dense embeddings (also read by the mechanism figures)."""
        if features.dim() != 4 or features.shape[1] != self.embed_dim:
            raise ValueError(
                f"features must be (B, {self.embed_dim}, h, w) dense embeddings, got {tuple(features.shape)}"
            )
        x = F.normalize(features, dim=1) * self.embed_dim**0.5
        channel = self.channel_attention(x.mean(dim=(2, 3)))[:, :, None, None]  # (B, D, 1, 1)
        spatial = self.spatial_attention(
            torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        )  # (B, 1, h, w)
        certainty_logits = self.certainty_head(x)  # (B, 1, h, w)
        gate = torch.sigmoid(channel) * torch.sigmoid(spatial) * torch.sigmoid(certainty_logits)
        return gate, certainty_logits.squeeze(1)

    def feature_hook(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        """The rectified embeddings, and the certainty logits :meth:`losses` supervises."""
        return self(features)

    def losses(self, context: AHSContext) -> Dict[str, Tensor]:
        """``loss_rectify``: certainty supervised by whether the cost volume of AFR's *input* was right."""
        certainty_logits = context.hook_states[self.attribute]
        features = context.hook_inputs[self.attribute]
        return {"loss_rectify": self.loss(certainty_logits, features, context.text, context.targets)}

    @torch.no_grad()
    def certainty_target(self, features: Tensor, text: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
        """Whether the pre-rectification cost volume predicts each patch right.

        Args:
            features: (B, D, h, w) dense embeddings *before* AFR.
            text: (T, P, D) or (B, T, P, D) text embeddings of the vocabulary the labels index.
            labels: (B, H, W) class indices in [0, T) or ``ignore_value``, at label resolution.

        Returns:
            target: (B, h, w) float32, 1 where argmax_t of the template-averaged cosine equals the
                patch label, else 0.
            labelled: (B, h, w) bool, the patches that have a (pure) label.
        """
        if text.dim() not in (3, 4) or text.shape[-1] != self.embed_dim:
            raise ValueError(
                f"text must be (T, P, {self.embed_dim}) or (B, T, P, {self.embed_dim}), got {tuple(text.shape)}"
            )
        num_classes = text.shape[-3]
        targets = patch_labels(labels, features.shape[-2:], num_classes, self.purity, self.ignore_value)
        with torch.autocast(device_type=features.device.type, enabled=False):
            directions = F.normalize(features.float(), dim=1)
            # mean_P cos(f, t_P) = f̂ · mean_P t̂_P: average the unit templates, no (P, T, h, w) volume.
            class_directions = F.normalize(text.float(), dim=-1).mean(dim=-2)
            if class_directions.dim() == 2:
                scores = torch.einsum("bdhw,td->bthw", directions, class_directions)
            else:
                scores = torch.einsum("bdhw,btd->bthw", directions, class_directions)
        prediction = scores.argmax(dim=1)
        labelled = targets != PATCH_IGNORE
        return (prediction == targets).float(), labelled

    def loss(self, certainty_logits: Tensor, features: Tensor, text: Tensor, labels: Tensor) -> Tensor:
        """Weighted certainty loss ``λ_r · mean_{labelled} BCE(σ(u), target)`` (float32 scalar).

        Args:
            certainty_logits: (B, h, w) from :meth:`forward`.
            features, text, labels: as in :meth:`certainty_target` (``features`` = AFR's input).
        """
        if certainty_logits.shape != features.shape[:1] + features.shape[2:]:
            raise ValueError(
                f"certainty logits {tuple(certainty_logits.shape)} do not match the feature grid of "
                f"{tuple(features.shape)}; pass the logits this module returned for these features"
            )
        target, labelled = self.certainty_target(features, text, labels)
        per_patch = F.binary_cross_entropy_with_logits(certainty_logits.float(), target, reduction="none")
        return self.loss_weight * (per_patch * labelled).sum() / labelled.sum().clamp(min=1)

    def extra_repr(self) -> str:
        return f"weight={self.loss_weight}, purity={self.purity}"
