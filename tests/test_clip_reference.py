"""Independent references for the CLIP backbone, and the backbone checked against them.

* open_clip's own ``CLIP`` (packed ``nn.MultiheadAttention``) holding the same weights: text
  embeddings and intermediate vision tokens;
* CAT-Seg's dense last block, written as CAT-Seg writes it (sequence-first, packed in-projection,
  q/k/v all through the output projection, ``tensor_split``, class-token residual), with CAT-Seg's
  bicubic positional-embedding resize.

The tiny backbones, adapter perturbation and OpenAI-layout export come from ``helpers.clip``
(fixtures of ``conftest.py``).
"""
import open_clip
import torch
import torch.nn.functional as F

from cat_seg.modeling.clip import CLIPBackbone
from cat_seg.modeling.clip.architectures import resolve_architecture
from helpers.clip import openai_layout


def open_clip_reference(backbone: CLIPBackbone) -> open_clip.model.CLIP:
    """open_clip's CLIP (packed attention) with the backbone's pretrained weights, eval mode."""
    arch = resolve_architecture(backbone.architecture)
    reference = open_clip.model.CLIP(embed_dim=arch.embed_dim, vision_cfg=arch.vision_cfg,
                                     text_cfg=arch.text_cfg, quick_gelu=True)
    reference.load_state_dict(openai_layout(backbone.clip.state_dict()))
    return reference.eval()


def catseg_resized_position_embedding(position_embedding, patch_size, native_resolution, tokens):
    """CAT-Seg's ``resized_pos_embed``: bicubic on the patch grid, class token kept."""
    width = position_embedding.shape[1]
    in_side = native_resolution // patch_size
    out_side = int((tokens - 1) ** 0.5)
    grid = position_embedding[1:].reshape(1, in_side, in_side, width).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(out_side, out_side), mode="bicubic", align_corners=False)
    return torch.cat([position_embedding[:1], grid.squeeze(0).reshape(width, -1).T], dim=0)


def catseg_dense_reference(reference: open_clip.model.CLIP, images: torch.Tensor, patch_size: int,
                           native_resolution: int) -> torch.Tensor:
    """CAT-Seg's ``encode_image(dense=True)[:, 1:]`` on open_clip modules -> (B, D, h, w)."""
    visual = reference.visual
    x = visual.conv1(images)
    side = x.shape[-1]
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
    x = x + catseg_resized_position_embedding(visual.positional_embedding, patch_size,
                                              native_resolution, x.shape[1])
    x = visual.ln_pre(x).permute(1, 0, 2)  # LND, as CAT-Seg
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x.permute(1, 0, 2)).permute(1, 0, 2)  # open_clip blocks are batch-first
    last = blocks[-1]
    y = F.linear(last.ln_1(x), last.attn.in_proj_weight, last.attn.in_proj_bias)
    length, batch, three_width = y.shape
    y = y.reshape(length, batch, 3, three_width // 3).permute(2, 1, 0, 3).reshape(
        3 * batch, length, three_width // 3)
    y = F.linear(y, last.attn.out_proj.weight, last.attn.out_proj.bias)
    _q, _k, v = y.tensor_split(3, dim=0)
    v = v.transpose(1, 0) + x[:1]
    v = v + last.mlp(last.ln_2(v))
    features = visual.ln_post(v.permute(1, 0, 2)) @ visual.proj  # (B, 1 + h·w, D)
    features = features[:, 1:]
    return features.transpose(1, 2).reshape(batch, -1, side, side)


def test_text_embeddings_equal_open_clip(tiny_backbone):
    backbone = tiny_backbone().eval()
    reference = open_clip_reference(backbone)
    names = ["cat", "traffic light", "sky, clouds"]
    prompts = [f"A photo of a {n} in the scene" for n in ("cat", "traffic light", "sky")]
    with torch.no_grad():
        tokens = open_clip.get_tokenizer("ViT-B-16")(prompts)
        expected = F.normalize(reference.encode_text(tokens), dim=-1)
        ours = backbone.encode_text(names)
    assert ours.shape == (3, 1, backbone.embed_dim)
    torch.testing.assert_close(ours[:, 0], expected, atol=1e-5, rtol=0)


def test_guidance_tokens_equal_open_clip_intermediate_blocks(random_images, tiny_backbone):
    backbone = tiny_backbone(resolution=224, guidance_layers=(2, 0)).eval()
    reference = open_clip_reference(backbone)
    images = random_images(backbone)
    with torch.no_grad():
        _, guidance = backbone.encode_image(images)
        x = reference.visual._embeds(images)
        outputs = []
        for block in reference.visual.transformer.resblocks:
            x = block(x)
            outputs.append(x[:, 1:].transpose(1, 2).reshape(2, backbone.vision_width, 14, 14))
    assert [g.shape for g in guidance] == [(2, backbone.vision_width, 14, 14)] * 2
    torch.testing.assert_close(guidance[0], outputs[2], atol=1e-5, rtol=0)
    torch.testing.assert_close(guidance[1], outputs[0], atol=1e-5, rtol=0)


def test_dense_embeddings_equal_catseg_dense_mode_at_resized_resolution(random_images,
                                                                        tiny_backbone):
    backbone = tiny_backbone().eval()  # 96 px: the 14 x 14 positional grid is resized to 6 x 6
    reference = open_clip_reference(backbone)
    images = random_images(backbone)
    with torch.no_grad():
        dense, _ = backbone.encode_image(images)
        expected = catseg_dense_reference(reference, images, patch_size=16, native_resolution=224)
    assert dense.shape == (2, backbone.embed_dim, 6, 6) == expected.shape
    torch.testing.assert_close(dense, expected, atol=1e-5, rtol=0)
