"""CAT-Seg head: shapes, parameter count, the pieces' math, top-k class selection."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

from cat_seg.modeling.head import CATSegHead
from cat_seg.modeling.head.class_aggregation import ClassAggregation, linear_attention
from cat_seg.modeling.head.cost_volume import cosine_cost_volume
from cat_seg.modeling.head.spatial_aggregation import (GuidedSwinBlock, SpatialAggregation,
                                                      shifted_window_mask, window_partition)
from helpers.head import TINY, randomized, tiny_inputs, window_merge

def test_vitb16_head_has_the_reference_parameter_count():
    # ViT-B/16 at 384 px: D=512, W=768, 24x24 grid, one template; CAT-Seg's aggregator
    # (2,308,961) plus its two guidance upsamplers (2,359,680).
    head = CATSegHead(embed_dim=512, clip_width=768, grid_size=(24, 24), num_templates=1)
    assert sum(p.numel() for p in head.parameters() if p.requires_grad) == 4_668_641
    upsamplers = head.decoder.guidance_upsamplers
    assert [tuple(u.weight.shape) for u in upsamplers] == [(768, 256, 2, 2), (768, 128, 4, 4)]


def test_forward_shape_and_gradients_reach_every_parameter():
    head = CATSegHead(**TINY)
    dense, text, guidance = tiny_inputs(T=5)
    logits = head(dense, text, guidance)
    assert logits.shape == (2, 5, 32, 32)
    logits.square().mean().backward()
    no_grad = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not no_grad


def test_text_per_image_equals_shared_text():
    head = randomized(CATSegHead(**TINY)).eval()
    dense, text, guidance = tiny_inputs(T=5)
    shared = head(dense, text, guidance)
    per_image = head(dense, text.unsqueeze(0).expand(2, -1, -1, -1), guidance)
    torch.testing.assert_close(shared, per_image)


def test_cost_volume_is_the_cosine_per_template():
    dense, text, _ = tiny_inputs(B=1, T=3, P=2)
    text = text * 3.0  # not normalised: the cosine must not care
    cost = cosine_cost_volume(dense, text.unsqueeze(0))
    assert cost.shape == (1, 2, 3, 8, 8)
    expected = F.cosine_similarity(dense[0, :, 5, 6], text[1, 0], dim=0)
    torch.testing.assert_close(cost[0, 0, 1, 5, 6], expected)


def test_window_partition_and_merge_are_inverse():
    x = torch.randn(3, 8, 12, 5)
    windows = window_partition(x, 4)
    assert windows.shape == (3 * 2 * 3, 16, 5)
    torch.testing.assert_close(windows[1].view(4, 4, 5), x[0, 0:4, 4:8])
    torch.testing.assert_close(window_merge(windows, 4, 8, 12), x)


def test_shifted_window_mask_separates_regions():
    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert set(mask.unique().tolist()) == {-100.0, 0.0}
    assert not mask[0].any()  # the top-left window lies inside one region
    assert (mask.diagonal(dim1=1, dim2=2) == 0).all()
    # the bottom-right window holds 4 regions of 2x2 patches: each token sees 4 of 16
    assert ((mask[3] == 0).sum(dim=1) == 4).all()


@pytest.mark.parametrize("shift, affected", [(0, (4, 4)), (2, (2, 2))])
def test_swin_block_attends_within_its_window_only(shift, affected):
    # Changing patch (0, 0) may change only the outputs of the patches it shares a window with:
    # the 4x4 top-left window unshifted; with shift 2, only its own 2x2 image region.
    torch.manual_seed(0)
    block = GuidedSwinBlock(16, 4, (8, 8), num_heads=2, window=4, shift=shift).eval()
    x, g = torch.randn(1, 1, 64, 16), torch.randn(1, 64, 4)  # one image, one class map
    y = block(x, g).view(8, 8, 16)
    x2 = x.clone()
    x2[0, 0, 0] += torch.randn(16)  # not a constant: LayerNorm would remove that
    changed = (block(x2, g).view(8, 8, 16) - y).abs().amax(-1) > 1e-6
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:affected[0], :affected[1]] = True
    assert torch.equal(changed, expected)


def test_spatial_aggregation_uses_the_whole_grid_as_window_when_it_is_small():
    aggregation = SpatialAggregation(16, 4, (4, 4), num_heads=2, window_size=12)
    assert [b.window for b in aggregation.blocks] == [4, 4]
    assert [b.shift for b in aggregation.blocks] == [0, 0]
    with pytest.raises(ValueError, match="WINDOW_SIZES"):
        SpatialAggregation(16, 4, (10, 10), num_heads=2, window_size=4)


def test_linear_attention_matches_the_explicit_formula():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 5, 3, 4), torch.randn(2, 7, 3, 4), torch.randn(2, 7, 3, 4)
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    weights = torch.einsum("nlhd,nshd->nhls", phi_q, phi_k)  # unnormalised attention
    expected = torch.einsum("nhls,nshd->nlhd", weights, v) / (weights.sum(-1).transpose(1, 2)
                                                               [..., None] + 1e-6)
    torch.testing.assert_close(linear_attention(q, k, v), expected)


def test_class_aggregation_is_permutation_equivariant_with_padding():
    layer = randomized(ClassAggregation(16, 8, num_heads=2, pooling_size=(2, 2), pad_len=6))
    x, g = torch.randn(2, 4, 16, 4, 4), torch.randn(2, 4, 8)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(layer(x, g)[:, perm], layer(x[:, perm], g[:, perm]))
    # the learned padding tokens take part in the attention
    unpadded = ClassAggregation(16, 8, num_heads=2, pooling_size=(2, 2), pad_len=0)
    unpadded.load_state_dict({k: v for k, v in layer.state_dict().items()
                              if "padding" not in k})
    assert not torch.allclose(unpadded(x, g), layer(x, g))


def test_more_classes_than_pad_len_keeps_each_images_top_classes():
    head = randomized(CATSegHead(**{**TINY, "class_pad_len": 4})).eval()
    dense, text, guidance = tiny_inputs(B=2, T=7)
    logits = head(dense, text, guidance)
    score = cosine_cost_volume(dense, text.unsqueeze(0).expand(2, -1, -1, -1))
    score = score.transpose(1, 2).flatten(2).amax(-1)  # (B, T): best similarity of each class
    for b in range(2):
        top = score[b].topk(4).indices.sort().values
        rest = [t for t in range(7) if t not in top.tolist()]
        assert (logits[b, rest] == -100).all()
        # the kept classes get exactly what the head gives for that vocabulary alone
        alone = head(dense[b:b + 1], text[top], [g[b:b + 1] for g in guidance])
        torch.testing.assert_close(logits[b, top], alone[0], rtol=1e-4, atol=1e-5)


def test_wrong_inputs_fail_clearly():
    head = CATSegHead(**TINY)
    dense, text, guidance = tiny_inputs()
    with pytest.raises(ValueError, match="grid"):
        head(dense[..., :4, :4], text, guidance)
    with pytest.raises(ValueError, match="template"):
        head(dense, text[:, :1], guidance)
    with pytest.raises(ValueError, match="CLIP_GUIDANCE_LAYERS"):
        head(dense, text, guidance[:1])
    with pytest.raises(ValueError, match="HIDDEN_DIMS"):
        CATSegHead(**{**TINY, "num_heads": 5})


def test_registered_and_built_from_config_with_the_backbone_dimensions(make_cfg):
    cfg = make_cfg(opts={"MODEL.SEM_SEG_HEAD.HIDDEN_DIMS": 32,
                         "MODEL.SEM_SEG_HEAD.DECODER_DIMS": [32, 16],
                         "MODEL.SEM_SEG_HEAD.DECODER_GUIDANCE_PROJ_DIMS": [8, 4],
                         "MODEL.SEM_SEG_HEAD.POOLING_SIZES": [1, 1],
                         "MODEL.SEM_SEG_HEAD.WINDOW_SIZES": 4})
    backbone = SimpleNamespace(embed_dim=16, vision_width=24, grid_size=(8, 8), num_prompts=3)
    head = SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, backbone)
    assert isinstance(head, CATSegHead)
    assert head.cost_embed.in_channels == 3 and head.cost_embed.out_channels == 32
    assert head.appearance_guidance_proj.in_channels == 16
    assert head.decoder.guidance_upsamplers[0].in_channels == 24
    assert head.layers[0].classwise.pooling_size == (1, 1)
    assert [b.window for b in head.layers[0].spatial.blocks] == [4, 4]
    assert head.class_pad_len == 256


def test_inference_runs_the_per_class_parts_in_chunks_with_the_same_logits(monkeypatch):
    # A long vocabulary at inference: spatial aggregation and decoder see a few classes at a
    # time (bounded memory), the class aggregation all of them; the logits are those of one pass.
    import cat_seg.modeling.head.cat_seg_head as head_module
    head = randomized(CATSegHead(**{**TINY, "class_pad_len": 0})).eval()
    dense, text, guidance = tiny_inputs(B=1, T=7)
    with torch.enable_grad():
        whole = head(dense, text, guidance).detach()
    seen = []
    decoder_forward = head.decoder.forward
    monkeypatch.setattr(head.decoder, "forward",
                        lambda x, *a, **k: seen.append(x.shape[1]) or decoder_forward(x, *a, **k))
    monkeypatch.setattr(head_module, "INFERENCE_CLASS_CHUNK", 3)
    with torch.no_grad():
        chunked = head(dense, text, guidance)
    assert seen == [3, 3, 1]
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
