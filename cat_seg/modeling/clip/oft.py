"""H-CLIP's orthogonal fine-tuning (OFT) adapters, shared across layers and modalities.

Every attention layer of both CLIP encoders gets four block-diagonal matrices (for q, k, v and the
output projection), each made of n = width / b blocks of size b x b. They are not free parameters:
all of them are drawn from **one shared tensor**, mixed by two learned relations (H-CLIP, CVPR 2025).

Parameters (names as in ``state_dict``; H-CLIP's names in brackets):

* ``shared_blocks`` (b, b, 4S, M) [``attn_q_proj_oft_layer_R``]: one b x b block per *slot*
  (4S slots = S layers x {q, k, v, out}) and per *block position* m (M = n_text + n_vision: the
  first n_text positions are the diagonal blocks of the text encoder, the last n_vision those of the
  vision encoder).
* ``layer_relation`` (4S, 4S) [``attn_q_proj_oft_relation_l_R.weight``]: the cross-layer relation,
  mixing slots.
* ``modality_relation`` (S, M, M) [``attn_q_proj_oft_relation_m_R[s].weight``]: per layer, the
  cross-modal relation, mixing block positions of both encoders.

Layer i of an encoder with L layers reads layer slot s = ⌈(i + 1)·S / L⌉ − 1 (S = the deeper
encoder's depth; for equal depths s = i, H-CLIP's case; for ViT-L/14, text layer i reads slot 2i + 1
so that both encoders' last layers share a slot). Its matrix of kind k ∈ {q, k, v, out} has blocks

    R[j] = Σ_{m, y} modality_relation[s, j, m] · layer_relation[4s + k, y] · shared_blocks[:, :, y, m]

for the encoder's block positions j. Text blocks are made orthogonal by the Cayley transform
``Q = (I − A)(I + A)⁻¹`` of their skew part ``A = (R − Rᵀ)/2``; vision blocks are used as they are
(H-CLIP's "free" vision side), or Cayley-transformed too with ``vision_cayley``.

Initialisation makes every matrix the identity exactly: both relations are identities, text slots
are zero (Cayley(0) = I), vision slots are identities (zero with ``vision_cayley``).

The matrices rotate the frozen weights as H-CLIP does: q, k, v on their input side
``W' = W · blockdiag(R)``, the output projection on its output side ``W' = blockdiag(R) · W``;
biases are unchanged.

Parameter count: b²·4S·M + (4S)² + S·M². ViT-B/16 (b = 128, S = 12, M = 4 + 6): 7,867,824.
"""
from typing import List

import torch
from torch import nn

from .blocks import ProjectionWeights

TEXT = "text"
VISION = "vision"
# Matrices per attention layer, in slot order: q, k, v, out.
KINDS_PER_LAYER = 4


def cayley(r: torch.Tensor) -> torch.Tensor:
    """Orthogonal ``(I − A)(I + A)⁻¹`` with ``A = (R − Rᵀ)/2``; batched over leading dims (..., b, b).

    ``I + A`` is always invertible (A's eigenvalues are imaginary); solved, not inverted.
    """
    skew = 0.5 * (r - r.transpose(-1, -2))
    eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
    # (I − A) and (I + A)⁻¹ commute, so the product equals the solution X of (I + A) X = I − A.
    return torch.linalg.solve(eye + skew, eye - skew)


class HCLIPOrthogonalAdapter(nn.Module):
    """The shared OFT tensor and its relations; produces each layer's block-diagonal matrices.

    Args:
        text_width, text_layers, vision_width, vision_layers: the two encoders' shapes.
        block_size: b, must divide both widths.
        vision_cayley: Cayley-transform the vision blocks too (H-CLIP: text only).
    """

    def __init__(self, *, text_width: int, text_layers: int, vision_width: int, vision_layers: int,
                 block_size: int = 128, vision_cayley: bool = False):
        super().__init__()
        bad = {name: width for name, width in (("text", text_width), ("vision", vision_width))
               if block_size <= 0 or width % block_size}
        if bad:
            raise ValueError(
                f"OFT block size {block_size} (MODEL.SEM_SEG_HEAD.OFT_BLOCK_SIZE) does not divide the "
                f"{' and '.join(f'{k} width {v}' for k, v in bad.items())}; choose a common divisor of "
                f"{text_width} and {vision_width} (H-CLIP uses 128)."
            )
        self.block_size = block_size
        self.vision_cayley = vision_cayley
        self.num_layers = {TEXT: text_layers, VISION: vision_layers}
        self.num_blocks = {TEXT: text_width // block_size, VISION: vision_width // block_size}
        slots = max(text_layers, vision_layers)
        positions = self.num_blocks[TEXT] + self.num_blocks[VISION]

        shared = torch.zeros(block_size, block_size, KINDS_PER_LAYER * slots, positions)
        if not vision_cayley:
            shared[:, :, :, self.num_blocks[TEXT]:] = torch.eye(block_size)[:, :, None, None]
        self.shared_blocks = nn.Parameter(shared)
        self.layer_relation = nn.Parameter(torch.eye(KINDS_PER_LAYER * slots))
        self.modality_relation = nn.Parameter(torch.eye(positions).repeat(slots, 1, 1))

    @property
    def num_slots(self) -> int:
        return self.modality_relation.shape[0]

    def layer_slots(self, modality: str) -> List[int]:
        """The layer slot read by each layer of ``modality`` (see the module docstring)."""
        layers = self.num_layers[modality]
        return [-(-(i + 1) * self.num_slots // layers) - 1 for i in range(layers)]

    def block_matrices(self, modality: str) -> torch.Tensor:
        """Diagonal blocks of every matrix of ``modality``: (L, 4 kinds [q, k, v, out], n, b, b).

        Computed in float32 at least, with autocast off (the Cayley solve needs it; see :meth:`rotate`).
        """
        with torch.autocast(device_type=self.shared_blocks.device.type, enabled=False):
            slots = torch.tensor(self.layer_slots(modality), device=self.shared_blocks.device)
            rows = (KINDS_PER_LAYER * slots[:, None]
                    + torch.arange(KINDS_PER_LAYER, device=slots.device)).reshape(-1)
            b = self.block_size
            dtype = torch.promote_types(self.shared_blocks.dtype, torch.float32)
            shared = self.shared_blocks.to(dtype)
            positions = shared.shape[-1]
            # Cross-layer relation: mix the slots, keeping only the rows this encoder reads.
            by_slot = shared.permute(2, 0, 1, 3).reshape(shared.shape[2], -1)  # (4S, b·b·M)
            mixed = (self.layer_relation.to(dtype)[rows] @ by_slot).view(
                len(slots), KINDS_PER_LAYER, b, b, positions)
            # Cross-modal relation of each layer's slot, rows of this encoder's block positions.
            first = 0 if modality == TEXT else self.num_blocks[TEXT]
            relation = self.modality_relation.to(dtype)[slots, first:first + self.num_blocks[modality]]
            blocks = torch.einsum("ljm,lkacm->lkjac", relation, mixed)
            if modality == TEXT or self.vision_cayley:
                blocks = cayley(blocks)
        return blocks

    def rotate(self, modality: str, weights: List[ProjectionWeights]) -> List[ProjectionWeights]:
        """Each layer's weights rotated by its matrices.

        q, k, v: ``W · blockdiag(R)`` (input side); out: ``blockdiag(R) · W`` (output side).
        """
        if len(weights) != self.num_layers[modality]:
            raise ValueError(
                f"expected {self.num_layers[modality]} {modality} layers, got {len(weights)}")
        # Autocast off: the rotated weights are float32 like the frozen ones (F.linear casts them
        # under autocast), so folded weights do not depend on the autocast state they were made in.
        with torch.autocast(device_type=self.shared_blocks.device.type, enabled=False):
            blocks = self.block_matrices(modality)
            return [
                ProjectionWeights(
                    rotate_input_side(w.q, r[0]), rotate_input_side(w.k, r[1]),
                    rotate_input_side(w.v, r[2]), rotate_output_side(w.out, r[3]),
                )
                for w, r in zip(weights, blocks)
            ]

    def extra_repr(self) -> str:
        blocks = ", ".join(f"{m}_blocks={n}" for m, n in self.num_blocks.items())
        return (f"block_size={self.block_size}, slots={self.num_slots}, {blocks}, "
                f"vision_cayley={self.vision_cayley}")


def rotate_input_side(weight: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``W · blockdiag(R_1..R_n)`` for W (out, n·b), blocks (n, b, b); no big matrix is formed."""
    out_features, in_features = weight.shape
    n, b, _ = blocks.shape
    dtype = torch.promote_types(weight.dtype, blocks.dtype)
    rotated = torch.einsum("oja,jac->ojc", weight.view(out_features, n, b).to(dtype), blocks.to(dtype))
    return rotated.reshape(out_features, in_features).to(weight.dtype)


def rotate_output_side(weight: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``blockdiag(R_1..R_n) · W`` for W (n·b, in) and blocks (n, b, b)."""
    out_features, in_features = weight.shape
    n, b, _ = blocks.shape
    dtype = torch.promote_types(weight.dtype, blocks.dtype)
    rotated = torch.einsum("jac,jci->jai", blocks.to(dtype), weight.view(n, b, in_features).to(dtype))
    return rotated.reshape(out_features, in_features).to(weight.dtype)
