"""The real ViT-B/16 @ 384 (random weights, CPU) and the ViT-L/14 adapter shapes."""
import json
from pathlib import Path

import pytest
import torch

from cat_seg.modeling.clip import CLIPBackbone
from cat_seg.modeling.clip.encoders import encode_text_tokens
from cat_seg.modeling.clip.oft import TEXT, VISION, HCLIPOrthogonalAdapter
from cat_seg.modeling.clip.prompts import build_prompts

COCO_NAMES = Path(__file__).resolve().parents[1] / "cat_seg" / "data" / "class_names" / "coco.json"


@pytest.fixture(scope="module")
def vit_b16():
    torch.manual_seed(0)
    return CLIPBackbone(architecture="ViT-B/16", weights="random", resolution=384,
                        guidance_layers=(3, 7), finetune="oft_both").eval()


def test_vit_b16_at_384_shapes_and_identity_at_initialisation(vit_b16):
    assert (vit_b16.embed_dim, vit_b16.vision_width, vit_b16.grid_size) == (512, 768, (24, 24))
    assert sum(p.numel() for p in vit_b16.parameters() if p.requires_grad) == 7_867_824
    image = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dense, guidance = vit_b16.encode_image(image)
        text = vit_b16.encode_text(["person", "sky, clouds"])
        with vit_b16.adapters_bypassed():
            plain_dense, plain_guidance = vit_b16.encode_image(image)
            plain_text = vit_b16.encode_text(["person", "sky, clouds"])
    assert dense.shape == (1, 512, 24, 24) and text.shape == (2, 1, 512)
    assert [g.shape for g in guidance] == [(1, 768, 24, 24)] * 2
    assert torch.isfinite(dense).all() and all(torch.isfinite(g).all() for g in guidance)
    assert torch.equal(dense, plain_dense) and torch.equal(text, plain_text)
    assert all(torch.equal(a, b) for a, b in zip(guidance, plain_guidance))


def test_truncation_on_coco_stuff_classes_is_exact_and_runs_fewer_positions(vit_b16):
    """Every 8th of the 171 COCO-Stuff classes (22): the truncated encoder runs only up to the
    longest prompt's end-of-text token and gives the 77-position result. How much faster that is
    is a measurement (tools/bench_text_truncation.py), not a test: it depends on the machine's
    load."""
    names = json.loads(COCO_NAMES.read_text())[::8]
    tokens = vit_b16.tokenizer(build_prompts(names, vit_b16.prompt_templates))
    positions = []  # the sequence length the text transformer runs, per call
    hook = vit_b16.clip.token_embedding.register_forward_hook(
        lambda module, inputs, output: positions.append(output.shape[1]))
    try:
        with torch.no_grad():
            weights = vit_b16._layer_weights(TEXT)
            truncated = encode_text_tokens(vit_b16.clip, tokens, weights, truncate=True)
            full = encode_text_tokens(vit_b16.clip, tokens, weights, truncate=False)
    finally:
        hook.remove()
    length = int(tokens.argmax(-1).max()) + 1
    assert tokens.shape[1] == 77 and length < 20
    # (N, L, C) token embeddings: the truncated call ran ``length`` positions, the full one 77.
    assert set(positions[:len(positions) // 2]) == {length}
    assert set(positions[len(positions) // 2:]) == {77}
    assert truncated.shape == full.shape == (len(names), 512)
    assert (truncated - full).abs().max().item() <= 1e-5


def test_truncation_benchmark_reports_the_same_embeddings(vit_b16):
    """tools/bench_text_truncation.py's measurement: exactness and lengths, never a speed bound."""
    from cat_seg.analysis.text_truncation import measure_text_truncation

    result = measure_text_truncation(vit_b16, ["sky", "grass"], repeats=1)
    assert result["prompts"] == 2 and result["context_length"] == 77
    assert result["positions"] < 77 and result["max_abs_diff"] <= 1e-5
    assert result["seconds_full"] > 0 and result["seconds_truncated"] > 0


def test_vit_l14_adapters_are_identities_of_the_right_shapes():
    adapter = HCLIPOrthogonalAdapter(text_width=768, text_layers=12, vision_width=1024,
                                     vision_layers=24, block_size=128)
    assert sum(p.numel() for p in adapter.parameters()) == 22_034_016
    with torch.no_grad():
        text, vision = adapter.block_matrices(TEXT), adapter.block_matrices(VISION)
    assert text.shape == (12, 4, 6, 128, 128) and vision.shape == (24, 4, 8, 128, 128)
    assert torch.equal(text, torch.eye(128).expand_as(text))
    assert torch.equal(vision, torch.eye(128).expand_as(vision))
