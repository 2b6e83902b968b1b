"""H-CLIP's OFT adapters: parametrisation, identity at initialisation, orthogonality, any shape."""
import pytest
import torch
import torch.nn.functional as F

from cat_seg.modeling.clip.oft import (TEXT, VISION, HCLIPOrthogonalAdapter, cayley,
                                       rotate_input_side, rotate_output_side)
from cat_seg.modeling.clip.blocks import ProjectionWeights


def small_adapter(vision_cayley=False, text_layers=3, vision_layers=3, text_width=64,
                  vision_width=96, block_size=32) -> HCLIPOrthogonalAdapter:
    return HCLIPOrthogonalAdapter(text_width=text_width, text_layers=text_layers,
                                  vision_width=vision_width, vision_layers=vision_layers,
                                  block_size=block_size, vision_cayley=vision_cayley)


def perturb(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def hclip_block_matrices(adapter: HCLIPOrthogonalAdapter, modality: str, layer: int) -> list:
    """H-CLIP's per-layer computation, step by step as its ``oft_forward`` does it (equal depths).

    rearrange 'b1 n1 l1 m1 -> b1 (n1 l1) m1', per-layer cross-modal Linear, keep this encoder's
    positions, rearrange 'b1 (n1 l1) m1 -> m1 b1 n1 l1', cross-layer Linear, keep slots
    4i .. 4i+3, split into q, k, v, out; Cayley as (I − A) @ inverse(I + A); block_diag.
    """
    shared = adapter.shared_blocks.detach()
    b, _, slots4, positions = shared.shape
    tensor = shared.reshape(b, b * slots4, positions)
    tensor = F.linear(tensor, adapter.modality_relation.detach()[layer])
    n_text = adapter.num_blocks[TEXT]
    tensor = tensor[:, :, :n_text] if modality == TEXT else tensor[:, :, n_text:]
    tensor = tensor.permute(2, 0, 1).reshape(-1, b, b, slots4)  # m1 b1 n1 l1
    related = F.linear(tensor, adapter.layer_relation.detach())[..., 4 * layer:4 * layer + 4]
    matrices = []
    for kind in range(4):
        blocks = related[..., kind]  # (n, b, b)
        if modality == TEXT or adapter.vision_cayley:
            skew = 0.5 * (blocks - blocks.transpose(1, 2))
            eye = torch.eye(b).expand_as(blocks)
            blocks = torch.bmm(eye - skew, torch.inverse(eye + skew))
        matrices.append(torch.block_diag(*blocks))
    return matrices


@pytest.mark.parametrize("vision_cayley", [False, True])
def test_every_matrix_is_exactly_the_identity_at_initialisation(vision_cayley):
    adapter = small_adapter(vision_cayley, text_layers=2, vision_layers=5)
    for modality in (TEXT, VISION):
        blocks = adapter.block_matrices(modality)
        eye = torch.eye(32).expand_as(blocks)
        assert torch.equal(blocks, eye)


@pytest.mark.parametrize("block_size,vision_cayley", [(32, False), (64, True), (128, False)])
def test_backbone_outputs_equal_plain_clip_exactly_at_initialisation(block_size, vision_cayley,
                                                                     tiny_backbone, random_images):
    backbone = tiny_backbone(oft_block_size=block_size, oft_vision_cayley=vision_cayley)
    images, names = random_images(backbone), ["cat", "road", "sky"]
    with torch.no_grad():  # training mode: rotated weights recomputed, the unmerged path
        dense, guidance = backbone.encode_image(images)
        text = backbone.encode_text(names)
        with backbone.adapters_bypassed():
            plain_dense, plain_guidance = backbone.encode_image(images)
            plain_text = backbone.encode_text(names)
    assert torch.equal(dense, plain_dense) and torch.equal(text, plain_text)
    assert all(torch.equal(a, b) for a, b in zip(guidance, plain_guidance))


@pytest.mark.parametrize("vision_cayley", [False, True])
def test_matrices_follow_hclip_parametrisation(vision_cayley):
    adapter = small_adapter(vision_cayley)
    perturb(adapter)
    torch.manual_seed(0)
    for modality, width in ((TEXT, 64), (VISION, 96)):
        weights = [ProjectionWeights(*torch.randn(4, width, width)) for _ in range(3)]
        rotated = adapter.rotate(modality, weights)
        for layer in range(3):
            q, k, v, out = hclip_block_matrices(adapter, modality, layer)
            w, r = weights[layer], rotated[layer]
            # H-CLIP: filt_q = W_q @ blockdiag(R_q) (input side), filt_out = blockdiag(R_o) @ W_o.
            torch.testing.assert_close(r.q, w.q @ q, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(r.k, w.k @ k, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(r.v, w.v @ v, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(r.out, out @ w.out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("vision_cayley", [False, True])
def test_text_blocks_are_orthogonal_vision_blocks_free_unless_cayley(vision_cayley):
    adapter = small_adapter(vision_cayley)
    perturb(adapter, scale=0.3)
    text, vision = adapter.block_matrices(TEXT), adapter.block_matrices(VISION)
    eye = torch.eye(32)
    assert (text.transpose(-1, -2) @ text - eye).abs().max() < 1e-5
    vision_error = (vision.transpose(-1, -2) @ vision - eye).abs().max()
    assert (vision_error < 1e-5) if vision_cayley else (vision_error > 1e-2)


def test_cayley_of_skew_input_is_orthogonal_and_zero_maps_to_identity():
    r = torch.randn(5, 16, 16)
    q = cayley(r)
    torch.testing.assert_close(q.transpose(-1, -2) @ q, torch.eye(16).expand(5, 16, 16),
                               atol=1e-5, rtol=0)
    assert torch.equal(cayley(torch.zeros(2, 8, 8)), torch.eye(8).expand(2, 8, 8))


def test_block_rotations_equal_explicit_block_diagonal_products():
    blocks = torch.randn(3, 4, 4)
    weight = torch.randn(12, 12)
    big = torch.block_diag(*blocks)
    torch.testing.assert_close(rotate_input_side(weight, blocks), weight @ big)
    torch.testing.assert_close(rotate_output_side(weight, blocks), big @ weight)


def test_layers_share_slots_by_relative_depth():
    vit_l = small_adapter(text_layers=12, vision_layers=24, text_width=768, vision_width=1024,
                          block_size=128)
    assert vit_l.layer_slots(VISION) == list(range(24))
    assert vit_l.layer_slots(TEXT) == [2 * i + 1 for i in range(12)]
    assert small_adapter(text_layers=12, vision_layers=12).layer_slots(TEXT) == list(range(12))
    shapes = {name: tuple(p.shape) for name, p in vit_l.named_parameters()}
    assert shapes == {"shared_blocks": (128, 128, 96, 14), "layer_relation": (96, 96),
                      "modality_relation": (24, 14, 14)}


def test_any_depth_and_width_divisible_by_the_block_size():
    adapter = small_adapter(text_layers=3, vision_layers=5, text_width=96, vision_width=160)
    perturb(adapter)
    assert adapter.block_matrices(TEXT).shape == (3, 4, 3, 32, 32)
    assert adapter.block_matrices(VISION).shape == (5, 4, 5, 32, 32)


def test_cross_layer_and_cross_modal_relations_couple_everything():
    """Once perturbed, a text layer's matrix depends on every slot and both encoders' positions."""
    adapter = small_adapter()
    perturb(adapter)
    adapter.block_matrices(TEXT)[0, 0].sum().backward()
    grad = adapter.shared_blocks.grad
    assert all(grad[:, :, slot].abs().sum() > 0 for slot in range(grad.shape[2]))
    assert all(grad[..., position].abs().sum() > 0 for position in range(grad.shape[3]))
    assert adapter.layer_relation.grad.abs().sum() > 0
    assert adapter.modality_relation.grad[0].abs().sum() > 0


def test_training_gradients_reach_every_adapter_parameter_and_no_clip_weight(tiny_backbone,
                                                                             perturb_adapter,
                                                                             random_images):
    backbone = tiny_backbone()
    perturb_adapter(backbone)
    dense, guidance = backbone.encode_image(random_images(backbone))
    text = backbone.encode_text(["cat", "dog"])
    (dense.square().mean() + guidance[0].square().mean() + text.sum()).backward()
    for name, param in backbone.adapter.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in backbone.clip.parameters())


@pytest.mark.parametrize("block_size", [48, 0])
def test_block_size_must_divide_both_widths(block_size, tiny_backbone):
    with pytest.raises(ValueError, match="OFT_BLOCK_SIZE"):
        tiny_backbone(oft_block_size=block_size)
    with pytest.raises(ValueError, match="text width 100"):
        small_adapter(text_width=100)
