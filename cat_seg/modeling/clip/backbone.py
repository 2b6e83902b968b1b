"""CLIPBackbone: open_clip's CLIP with dense features, prompt encoding and H-CLIP's OFT adapters.

``build_clip_backbone(cfg)`` reads ``MODEL.SEM_SEG_HEAD.{CLIP_PRETRAINED, CLIP_WEIGHTS,
CLIP_RESOLUTION, CLIP_GUIDANCE_LAYERS, CLIP_FINETUNE, OFT_BLOCK_SIZE, OFT_VISION_CAYLEY,
PROMPT_ENSEMBLE_TYPE}``; ``CLIPBackbone(architecture=..., weights=..., ...)`` builds one without
a config (tests, tools; inside ``with torch.device("meta")`` it only allocates shapes).

Fine-tuning modes (``CLIP_FINETUNE``); every other CLIP parameter is frozen:

* ``oft_both`` (H-CLIP): only the adapter trains (``adapter.*``; 7,867,824 parameters for ViT-B/16);
* ``attention`` (CAT-Seg): the q and v projection weights of every attention layer of both encoders
  (``*.attn.q_proj.weight``, ``*.attn.v_proj.weight``; 20,447,232 for ViT-B/16);
* ``full``: every CLIP parameter of both encoders (CAT-Seg's "fine-tune all" ablation row;
  149,620,736 for ViT-B/16), all but the contrastive temperature ``logit_scale``, which no loss
  here reads;
* ``frozen``: nothing.

In ``attention`` and ``full`` the pretrained weights are overwritten by training, so
:meth:`CLIPBackbone.pretrained_copy` rebuilds them (from ``weights``) where a frozen reference
is needed.

Every CLIP parameter lives under this module, so an optimizer finds them by the module's prefix
(``backbone.`` inside the meta-architecture). Parameter names (W: width, i: block index):

=================================================  ==============================================
``clip.visual.conv1.weight``                       patch embedding (W, 3, p, p), no bias
``clip.visual.class_embedding``                    (W,)
``clip.visual.positional_embedding``               (1 + g·g, W) at the *native* grid g (14 for
                                                   B/16); resampled to ``grid_size`` in forward
``clip.visual.ln_pre.{weight,bias}``
``clip.visual.transformer.resblocks.{i}.ln_1``     ``.weight``, ``.bias``
``clip.visual.transformer.resblocks.{i}.attn``     ``.{q,k,v,out}_proj.{weight,bias}`` (split q/k/v)
``clip.visual.transformer.resblocks.{i}.ln_2``     ``.weight``, ``.bias``
``clip.visual.transformer.resblocks.{i}.mlp``      ``.c_fc.{weight,bias}``, ``.c_proj.{weight,bias}``
``clip.visual.ln_post.{weight,bias}``,
``clip.visual.proj``                               (W, D)
``clip.token_embedding.weight``                    (49408, W_text)
``clip.positional_embedding``                      (77, W_text)
``clip.transformer.resblocks.{i}.*``               as the vision blocks
``clip.ln_final.{weight,bias}``,
``clip.text_projection``                           (W_text, D)
``clip.logit_scale``                               CLIP's temperature (unused here, kept for loading)
``adapter.{shared_blocks,layer_relation,``         ``oft_both`` only; see :mod:`.oft`
``modality_relation}``
=================================================  ==============================================

That is OpenAI's / open_clip's layout under ``clip.`` with ``attn.in_proj_{weight,bias}`` split into
``attn.{q,k,v}_proj.{weight,bias}`` (:func:`.checkpoint.convert_clip_state_dict` does the conversion;
it also accepts CAT-Seg's ``attn.{q,k,v}_proj_weight``).

Weights used by a forward pass:

* inside :meth:`CLIPBackbone.adapters_bypassed`: the pretrained (un-adapted) weights;
* training mode, or whenever autograd must reach CLIP's trainable parameters: the weights rotated by
  the adapter, recomputed at every call (gradients flow into the adapter);
* evaluation mode otherwise: the rotated weights *folded* once into plain tensors and reused, so
  inference costs what plain CLIP costs. The folded weights and the cached text embeddings are keyed
  on the identity, storage and version counter of every parameter (any in-place update by an
  optimizer, ``load_state_dict``, ``.to()``), and dropped by every ``train()`` / ``eval()`` switch and
  by :meth:`CLIPBackbone.clear_caches`.
"""
import itertools
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple

import open_clip
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from ...utils.device import module_device
from ..activation_checkpointing import check_mode
from .architectures import CLIPArchitecture, resolve_architecture
from .blocks import ProjectionWeights, SplitQKVSelfAttention
from .checkpoint import (WeightsSource, convert_clip_state_dict, load_clip_weights, read_checkpoint,
                         resolve_weights)
from .encoders import encode_image_tokens, encode_text_tokens
from .oft import TEXT, VISION, HCLIPOrthogonalAdapter
from .prompts import build_prompts, clip_tokenizer, prompt_templates, warn_truncated

FINETUNE_MODES = ("oft_both", "attention", "full", "frozen")
# Vocabularies whose embeddings / tokens are kept (an evaluation cycles through a few test sets).
_CACHED_VOCABULARIES = 4


class CLIPBackbone(nn.Module):
    """CLIP image and text encoders for open-vocabulary segmentation (see the module docstring).

    Attributes:
        embed_dim: D, the joint embedding width.
        vision_width: W, the vision transformer width (guidance channels).
        resolution: R, the input side ``encode_image`` expects.
        patch_size: p.
        grid_size: (h, w) = (R / p, R / p), the dense feature grid.
        guidance_layers: the vision blocks whose tokens ``encode_image`` returns.
        pixel_mean, pixel_std: CLIP's input normalisation on the 0–255 scale, tuples of 3.
        prompt_templates: the P templates; num_prompts: P.
        finetune: the fine-tuning mode.
    """

    @configurable
    def __init__(
        self,
        *,
        architecture: str,
        weights: str,
        resolution: Optional[int] = None,
        guidance_layers: Sequence[int] = (),
        finetune: str = "frozen",
        oft_block_size: int = 128,
        oft_vision_cayley: bool = False,
        prompt_ensemble: str = "single",
        activation_checkpointing: str = "none",
    ):
        """
        Args:
            architecture: "AHS-Tiny/16", an OpenAI / CAT-Seg name ("ViT-B/16", "ViT-L/14@336px")
                or a plain-ViT open_clip name (see :func:`.architectures.resolve_architecture`).
            weights: ``"random"``, a local checkpoint file or an open_clip pretrained tag.
            resolution: input side R (None: the architecture's native resolution).
            guidance_layers: vision block indices in [0, L−2] (CAT-Seg: 3, 7 for B; 7, 15 for L).
            finetune: one of ``FINETUNE_MODES``.
            oft_block_size: b, the adapters' block size (``oft_both``).
            oft_vision_cayley: Cayley-parametrise the vision adapters too (``oft_both``).
            prompt_ensemble: ``"single"`` or ``"imagenet"``.
            activation_checkpointing: what each block keeps for the backward pass in training:
                ``"none"``, ``"selective"`` or ``"full"``
                (:mod:`cat_seg.modeling.activation_checkpointing`; same gradients).
        """
        super().__init__()
        # Every configuration check comes before any download or checkpoint read.
        _check_finetune_mode(finetune)
        arch = resolve_architecture(architecture)
        self._set_geometry(arch, resolution)
        self._set_guidance_layers(arch, guidance_layers)
        self._set_prompts(arch, prompt_ensemble)
        self.finetune = finetune
        # Kept to rebuild the pretrained CLIP (pretrained_copy) when training overwrites it.
        self.weights, self.prompt_ensemble = weights, prompt_ensemble
        self.activation_checkpointing = check_mode(
            activation_checkpointing, "MODEL.SEM_SEG_HEAD.CLIP_ACTIVATION_CHECKPOINTING")
        adapter = self._build_adapter(arch, finetune, oft_block_size, oft_vision_cayley)

        source = resolve_weights(arch, weights)
        self.pixel_mean = tuple(255.0 * m for m in source.mean)
        self.pixel_std = tuple(255.0 * s for s in source.std)
        # Registration order (clip, then adapter) is the state dict's key order.
        self.clip = _build_split_attention_clip(arch, source)
        if source.path is not None:
            load_clip_weights(self.clip, convert_clip_state_dict(read_checkpoint(source.path)),
                              source=weights)
        self.adapter = adapter
        self._freeze_all_but_trained(finetune)
        self._init_caches()

    # ------------------------------------------------------------------ construction steps
    def _set_geometry(self, arch: CLIPArchitecture, resolution: Optional[int]) -> None:
        """Widths, patch size, input resolution (checked) and the dense grid."""
        self.architecture = arch.name
        self.embed_dim = arch.embed_dim
        self.vision_width = int(arch.vision_cfg.width)
        self.patch_size = arch.patch_size
        self.resolution = int(resolution) if resolution is not None else arch.native_resolution
        if self.resolution <= 0 or self.resolution % self.patch_size:
            raise ValueError(f"CLIP resolution {self.resolution} (MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION) "
                             f"is not a positive multiple of the patch size {self.patch_size}.")
        self.grid_size = (self.resolution // self.patch_size,) * 2

    def _set_guidance_layers(self, arch: CLIPArchitecture, guidance_layers: Sequence[int]) -> None:
        """The vision blocks whose tokens guide the decoder (any but the last, which runs dense)."""
        depth = int(arch.vision_cfg.layers)
        self.guidance_layers = tuple(int(i) for i in guidance_layers)
        if any(not 0 <= i <= depth - 2 for i in self.guidance_layers):
            raise ValueError(
                f"CLIP guidance layers {list(self.guidance_layers)} (MODEL.SEM_SEG_HEAD."
                f"CLIP_GUIDANCE_LAYERS) must be vision block indices in [0, {depth - 2}]: {arch.name} "
                f"has {depth} blocks and the last one runs in dense mode (CAT-Seg: [3, 7] for "
                f"ViT-B/16, [7, 15] for ViT-L/14).")

    def _set_prompts(self, arch: CLIPArchitecture, prompt_ensemble: str) -> None:
        """Prompt templates and the tokenizer of the text encoder's context length."""
        self.prompt_templates = prompt_templates(prompt_ensemble)
        self.num_prompts = len(self.prompt_templates)
        self.tokenizer = clip_tokenizer(int(arch.text_cfg.context_length))

    def _build_adapter(self, arch: CLIPArchitecture, finetune: str, block_size: int,
                       vision_cayley: bool) -> Optional[HCLIPOrthogonalAdapter]:
        """H-CLIP's adapters for ``oft_both``, else None (built before CLIP, as always)."""
        if finetune != "oft_both":
            return None
        text_cfg = arch.text_cfg
        return HCLIPOrthogonalAdapter(
            text_width=int(text_cfg.width), text_layers=int(text_cfg.layers),
            vision_width=self.vision_width, vision_layers=int(arch.vision_cfg.layers),
            block_size=block_size, vision_cayley=vision_cayley)

    def _freeze_all_but_trained(self, finetune: str) -> None:
        """Freeze CLIP; ``attention`` then unfreezes every q and v projection weight, ``full``
        every parameter but the unused temperature."""
        self.clip.requires_grad_(finetune == "full")
        self.clip.logit_scale.requires_grad_(False)
        if finetune == "attention":
            for block in self._blocks(TEXT) + self._blocks(VISION):
                block.attn.q_proj.weight.requires_grad_(True)
                block.attn.v_proj.weight.requires_grad_(True)

    def _init_caches(self) -> None:
        """Bypass depth, folded weights, text embeddings and tokens (see the module doc)."""
        self._bypass_depth = 0
        self._folded: Dict[str, Tuple[Hashable, List[ProjectionWeights]]] = {}
        self._text_cache: "OrderedDict[Hashable, Tuple[Hashable, torch.Tensor]]" = OrderedDict()
        self._token_cache: "OrderedDict[Tuple[str, ...], torch.Tensor]" = OrderedDict()

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "architecture": head.CLIP_PRETRAINED,
            "weights": head.CLIP_WEIGHTS,
            "resolution": head.CLIP_RESOLUTION,
            "guidance_layers": tuple(head.CLIP_GUIDANCE_LAYERS),
            "finetune": head.CLIP_FINETUNE,
            "oft_block_size": head.OFT_BLOCK_SIZE,
            "oft_vision_cayley": head.OFT_VISION_CAYLEY,
            "prompt_ensemble": head.PROMPT_ENSEMBLE_TYPE,
            "activation_checkpointing": head.CLIP_ACTIVATION_CHECKPOINTING,
        }

    # ------------------------------------------------------------------ public API
    @property
    def has_adapters(self) -> bool:
        """Whether CLIP carries OFT adapters (``oft_both``); without, bypassing them changes nothing."""
        return self.adapter is not None

    def encode_image(self, images: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Dense CLIP features of CLIP-normalised images.

        Args:
            images: (B, 3, R, R), normalised with ``pixel_mean`` / ``pixel_std``, R = ``resolution``.
        Returns:
            dense: (B, D, h, w) projected patch embeddings of the dense last block (not normalised);
            guidance: per ``guidance_layers`` entry, in order, the (B, W, h, w) block output tokens.
        """
        expected = (3, self.resolution, self.resolution)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"encode_image expects (B, {', '.join(map(str, expected))}) CLIP-normalised "
                f"images, got {tuple(images.shape)}; resize them to CLIP_RESOLUTION first.")
        dense, guidance = encode_image_tokens(
            self.clip.visual, images, self._layer_weights(VISION), self.guidance_layers,
            checkpointing=self.activation_checkpointing)
        batch, (h, w) = images.shape[0], self.grid_size

        def to_map(tokens: torch.Tensor) -> torch.Tensor:  # (B, h·w, C) -> (B, C, h, w)
            return tokens.transpose(1, 2).reshape(batch, tokens.shape[-1], h, w)

        return to_map(dense), [to_map(tokens) for tokens in guidance]

    def encode_text(self, class_names: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings (T, P, D): class ``t`` in template ``p`` (first synonym).

        Results computed without an autograd graph are cached per vocabulary (and bypass state,
        autocast state and weights); the cached tensor is returned as is: do not modify it in place.
        """
        names = tuple(class_names) if not isinstance(class_names, str) else class_names
        prompts = build_prompts(names, self.prompt_templates)
        cache_key = (names, self._bypass_depth > 0)
        state = None
        if not self._needs_graph():
            state = (self._weights_key(), _autocast_state(module_device(self.clip)))
            hit = self._text_cache.get(cache_key)
            if hit is not None and hit[0] == state:
                self._text_cache.move_to_end(cache_key)
                return hit[1]
        tokens = self._tokens(names, prompts)
        embeddings = encode_text_tokens(self.clip, tokens, self._layer_weights(TEXT),
                                        checkpointing=self.activation_checkpointing)
        embeddings = F.normalize(embeddings, dim=-1).view(len(names), self.num_prompts, -1)
        if state is not None:
            _remember(self._text_cache, cache_key, (state, embeddings))
        return embeddings

    @contextmanager
    def adapters_bypassed(self) -> Iterator["CLIPBackbone"]:
        """Inside, every forward uses the pretrained weights (no adapters): the SDR teacher.

        Re-entrant, and usable inside or outside ``torch.no_grad()``. In the ``attention``,
        ``full`` and ``frozen`` modes there are no adapters and the forward is unchanged (see
        :meth:`pretrained_copy` for the pretrained CLIP of the first two).
        """
        self._bypass_depth += 1
        try:
            yield self
        finally:
            self._bypass_depth -= 1

    @property
    def overwrites_pretrained(self) -> bool:
        """Whether training changes CLIP's own weights (``attention``, ``full``): then neither
        :meth:`adapters_bypassed` nor the module itself is the pretrained CLIP any more."""
        return self.finetune in ("attention", "full")

    def pretrained_copy(self) -> "CLIPBackbone":
        """A frozen CLIP with the pretrained weights (read again from ``weights``), the same
        architecture, resolution and prompts, on this module's device, in evaluation mode.

        Raises ``ValueError`` for ``weights="random"``: those weights cannot be drawn again."""
        if self.weights == "random":
            raise ValueError("the pretrained weights of a CLIP built with CLIP_WEIGHTS random "
                             "cannot be rebuilt; use a checkpoint file for a frozen reference")
        copy = CLIPBackbone(architecture=self.architecture, weights=self.weights,
                            resolution=self.resolution, finetune="frozen",
                            prompt_ensemble=self.prompt_ensemble)
        return copy.to(module_device(self)).eval()

    def train(self, mode: bool = True) -> "CLIPBackbone":
        """Evaluation folds the adapters into plain weights (at its first forward); training unfolds."""
        self.clear_caches()
        return super().train(mode)

    def clear_caches(self) -> None:
        """Drop folded weights and cached text embeddings (needed only after weight edits that
        bypass autograd's version counters in evaluation mode, e.g. ``p.data`` in-place updates)."""
        self._folded.clear()
        self._text_cache.clear()

    def extra_repr(self) -> str:
        return (f"architecture={self.architecture!r}, resolution={self.resolution}, "
                f"grid_size={self.grid_size}, guidance_layers={list(self.guidance_layers)}, "
                f"finetune={self.finetune!r}, num_prompts={self.num_prompts}")

    # ------------------------------------------------------------------ internals
    def _apply(self, fn, *args, **kwargs):
        # .to() / .half() / .cuda() make new tensors: cached ones would be on the old device/dtype.
        self.clear_caches()
        return super()._apply(fn, *args, **kwargs)

    def _blocks(self, modality: str) -> List[nn.Module]:
        tower = self.clip.transformer if modality == TEXT else self.clip.visual.transformer
        return list(tower.resblocks)

    def _needs_graph(self) -> bool:
        """Whether autograd has to reach a trainable parameter used in the current context."""
        if not torch.is_grad_enabled():
            return False
        used = self.clip.parameters() if self._bypass_depth > 0 else self.parameters()
        return any(p.requires_grad for p in used)

    def _weights_key(self) -> Hashable:
        """Changes whenever a parameter or buffer is replaced, moved or updated in place."""
        return tuple((id(t), t.data_ptr(), t._version)
                     for t in itertools.chain(self.parameters(), self.buffers()))

    def _layer_weights(self, modality: str) -> List[ProjectionWeights]:
        """The projection weights every attention layer of ``modality`` uses now (module docstring)."""
        own = [block.attn.projection_weights() for block in self._blocks(modality)]
        if self.adapter is None or self._bypass_depth > 0:
            return own
        if self.training or self._needs_graph():
            return self.adapter.rotate(modality, own)
        key = self._weights_key()
        folded = self._folded.get(modality)
        if folded is None or folded[0] != key:
            with torch.no_grad():
                folded = (key, self.adapter.rotate(modality, own))
            self._folded[modality] = folded
        return folded[1]

    def _tokens(self, names: Tuple[str, ...], prompts: List[str]) -> torch.Tensor:
        """Token ids (T·P, context) of the prompts, on CLIP's device (cached per vocabulary)."""
        tokens = self._token_cache.get(names)
        if tokens is None:
            warn_truncated(names, prompts, self.tokenizer)
            tokens = self.tokenizer(prompts)
            _remember(self._token_cache, names, tokens)
        return tokens.to(module_device(self.clip))


def _check_finetune_mode(finetune: str) -> None:
    if finetune not in FINETUNE_MODES:
        raise ValueError(f"Unknown CLIP fine-tuning mode {finetune!r} (MODEL.SEM_SEG_HEAD."
                         f"CLIP_FINETUNE); choose one of {list(FINETUNE_MODES)}.")


def _build_split_attention_clip(arch: CLIPArchitecture, source: WeightsSource) -> nn.Module:
    """open_clip's CLIP for ``arch`` (QuickGELU if the weights need it), its attention layers
    replaced by :class:`.blocks.SplitQKVSelfAttention` (random weights until loaded)."""
    clip = open_clip.model.CLIP(
        embed_dim=arch.embed_dim, vision_cfg=arch.vision_cfg, text_cfg=arch.text_cfg,
        quick_gelu=arch.quick_gelu or source.quick_gelu,
        **({"init_logit_scale": arch.config["init_logit_scale"]}
           if "init_logit_scale" in arch.config else {}),
    )
    for block in itertools.chain(clip.visual.transformer.resblocks, clip.transformer.resblocks):
        block.attn = SplitQKVSelfAttention.from_multihead_attention(block.attn)
    return clip


def _autocast_state(device: torch.device) -> Tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type)


def _remember(cache: "OrderedDict", key: Hashable, value: Any) -> None:
    """Insert into a least-recently-used cache of ``_CACHED_VOCABULARIES`` entries."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHED_VOCABULARIES:
        cache.popitem(last=False)


def build_clip_backbone(cfg) -> CLIPBackbone:
    """The CLIP backbone described by ``cfg.MODEL.SEM_SEG_HEAD`` (see :class:`CLIPBackbone`)."""
    return CLIPBackbone(cfg)
