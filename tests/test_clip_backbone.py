"""CLIPBackbone: construction, contract attributes, fine-tuning modes, merged inference, bypass."""
import pytest
import torch

from cat_seg.modeling.clip import CLIPBackbone, build_clip_backbone
from helpers.clip import TINY

OPENAI_MEAN_255 = (122.7709383, 116.7460125, 104.09373615)
OPENAI_STD_255 = (68.5005327, 66.6321579, 70.32316305)


def outputs(backbone, images, names=("cat", "road, street", "sky")):
    with torch.no_grad():
        dense, guidance = backbone.encode_image(images)
        return dense, guidance, backbone.encode_text(list(names))


def assert_outputs_close(a, b, atol=1e-5):
    torch.testing.assert_close(a[0], b[0], atol=atol, rtol=0)
    for x, y in zip(a[1], b[1]):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)
    torch.testing.assert_close(a[2], b[2], atol=atol, rtol=0)


def max_difference(a, b) -> float:
    return max([(a[0] - b[0]).abs().max().item(), (a[2] - b[2]).abs().max().item()]
               + [(x - y).abs().max().item() for x, y in zip(a[1], b[1])])


def trainable_names(backbone):
    return {name for name, p in backbone.named_parameters() if p.requires_grad}


def adapter_step(backbone, images, lr=1e-2):
    """One AdamW step on a loss of the backbone's outputs (training mode)."""
    optimizer = torch.optim.AdamW([p for p in backbone.parameters() if p.requires_grad], lr=lr)
    dense, guidance = backbone.encode_image(images)
    loss = dense.square().mean() + guidance[-1].square().mean() - backbone.encode_text(["cat"]).sum()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def test_build_from_config_reads_every_key(make_cfg):
    head = "MODEL.SEM_SEG_HEAD."
    cfg = make_cfg(opts={
        head + "CLIP_PRETRAINED": TINY, head + "CLIP_WEIGHTS": "random",
        head + "CLIP_RESOLUTION": 64, head + "CLIP_GUIDANCE_LAYERS": [2, 0],
        head + "CLIP_FINETUNE": "oft_both", head + "OFT_BLOCK_SIZE": 64,
        head + "OFT_VISION_CAYLEY": True, head + "PROMPT_ENSEMBLE_TYPE": "imagenet",
        head + "CLIP_ACTIVATION_CHECKPOINTING": "selective"})
    backbone = build_clip_backbone(cfg)
    assert isinstance(backbone, CLIPBackbone)
    assert (backbone.embed_dim, backbone.vision_width, backbone.resolution) == (64, 128, 64)
    assert (backbone.patch_size, backbone.grid_size, backbone.num_prompts) == (16, (4, 4), 80)
    assert backbone.guidance_layers == (2, 0) and backbone.finetune == "oft_both"
    assert backbone.activation_checkpointing == "selective"
    assert backbone.adapter.block_size == 64 and backbone.adapter.vision_cayley
    assert backbone.pixel_mean == pytest.approx(OPENAI_MEAN_255)
    assert backbone.pixel_std == pytest.approx(OPENAI_STD_255)
    dense, guidance = backbone.encode_image(torch.zeros(1, 3, 64, 64))
    assert dense.shape == (1, 64, 4, 4) and [g.shape for g in guidance] == [(1, 128, 4, 4)] * 2


def test_plain_constructor_defaults_to_native_resolution_frozen_single_prompt():
    backbone = CLIPBackbone(architecture=TINY, weights="random")
    assert backbone.resolution == 224 and backbone.grid_size == (14, 14)
    assert backbone.finetune == "frozen" and not backbone.has_adapters and backbone.num_prompts == 1
    assert trainable_names(backbone) == set()


def test_finetune_modes_train_exactly_their_parameters(tiny_backbone):
    oft = tiny_backbone(finetune="oft_both")
    assert trainable_names(oft) == {"adapter.shared_blocks", "adapter.layer_relation",
                                    "adapter.modality_relation"}
    attention = tiny_backbone(finetune="attention")
    expected = {f"clip.{tower}.resblocks.{i}.attn.{proj}_proj.weight"
                for tower, depth in (("visual.transformer", 4), ("transformer", 2))
                for i in range(depth) for proj in ("q", "v")}
    assert trainable_names(attention) == expected
    assert sum(p.numel() for p in attention.parameters() if p.requires_grad) == 2 * 6 * 128 * 128
    assert trainable_names(tiny_backbone(finetune="frozen")) == set()
    full = tiny_backbone(finetune="full")
    assert trainable_names(full) == {n for n, _ in full.named_parameters()} - {"clip.logit_scale"}


def test_pretrained_copy_restores_the_weights_that_full_fine_tuning_overwrites(tiny_backbone,
                                                                                random_images,
                                                                                tmp_path):
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        tiny_backbone(finetune="full").pretrained_copy()
    path = str(tmp_path / "clip.pt")
    torch.save(tiny_backbone().clip.state_dict(), path)
    backbone = tiny_backbone(finetune="full", weights=path)
    images = random_images(backbone)
    before = outputs(backbone.eval(), images)
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert backbone.overwrites_pretrained
    assert max_difference(outputs(backbone, images), before) > 1e-2
    copy = backbone.pretrained_copy()
    assert not copy.overwrites_pretrained and copy.finetune == "frozen"
    assert max_difference(outputs(copy, images), before) <= 1e-6


@pytest.mark.parametrize("architecture,resolution,counts", [
    ("ViT-B/16", 384, {"oft_both": 7_867_824, "attention": 20_447_232, "full": 149_620_736,
                       "frozen": 0}),
    ("ViT-L/14@336px", 336, {"oft_both": 22_034_016, "attention": 64_487_424,
                             "full": 427_944_192, "frozen": 0}),
])
def test_trainable_parameter_counts_of_the_real_architectures(architecture, resolution, counts):
    for mode, count in counts.items():
        with torch.device("meta"):  # real shapes, no memory
            backbone = CLIPBackbone(architecture=architecture, weights="random", resolution=resolution,
                                    finetune=mode)
        assert sum(p.numel() for p in backbone.parameters() if p.requires_grad) == count, mode
    assert backbone.grid_size == (24, 24)


def test_merged_inference_equals_unmerged_and_folds_once(monkeypatch, tiny_backbone,
                                                         perturb_adapter, random_images):
    backbone = tiny_backbone()
    perturb_adapter(backbone)
    images = random_images(backbone)
    unmerged = outputs(backbone, images)  # training mode: rotations recomputed every call
    backbone.eval()
    calls = []
    original = backbone.adapter.block_matrices
    monkeypatch.setattr(backbone.adapter, "block_matrices", lambda m: calls.append(m) or original(m))
    merged = outputs(backbone, images)
    merged_again = outputs(backbone, images, names=("tree",))
    assert max_difference(merged, unmerged) <= 1e-5
    assert sorted(calls) == ["text", "vision"]  # folded once per encoder, then plain weights
    assert merged_again[2].shape == (1, 1, 64)


def test_weights_trained_after_an_evaluation_are_served_fresh(tiny_backbone, random_images):
    backbone = tiny_backbone()
    images = random_images(backbone)
    before = outputs(backbone.eval(), images)
    backbone.train()
    for _ in range(2):
        adapter_step(backbone, images)
    after = outputs(backbone.eval(), images)
    expected = outputs(backbone.train(), images)  # unmerged, from the current weights
    assert max_difference(after, before) > 1e-3
    assert max_difference(after, expected) <= 1e-5


@pytest.mark.parametrize("finetune", ["oft_both", "attention"])
def test_updates_made_in_evaluation_mode_invalidate_folded_weights_and_text(finetune,
                                                                            random_images,
                                                                            tiny_backbone):
    backbone = tiny_backbone(finetune=finetune).eval()
    images = random_images(backbone)
    before = outputs(backbone, images)
    adapter_step(backbone, images)  # optimizer step without a train() switch
    stepped = outputs(backbone, images)
    assert max_difference(stepped, before) > 1e-4
    assert max_difference(stepped, outputs(backbone.train(), images)) <= 1e-5


def test_load_state_dict_in_evaluation_mode_is_served_fresh(perturb_adapter, random_images,
                                                            tiny_backbone):
    backbone, other = tiny_backbone(seed=0).eval(), tiny_backbone(seed=5)
    perturb_adapter(other)
    images = random_images(backbone)
    outputs(backbone, images)
    backbone.load_state_dict(other.state_dict())
    assert max_difference(outputs(backbone, images), outputs(other.eval(), images)) == 0


def test_bypass_runs_the_pretrained_weights_inside_no_grad_and_nested(tiny_backbone, random_images):
    backbone = tiny_backbone()
    plain = tiny_backbone(finetune="frozen")
    plain.clip.load_state_dict(backbone.clip.state_dict())
    images = random_images(backbone)
    adapter_step(backbone, images)
    adapted = outputs(backbone, images)
    for mode in (True, False):
        backbone.train(mode)
        with torch.no_grad(), backbone.adapters_bypassed():
            teacher = outputs(backbone, images)
            with backbone.adapters_bypassed():
                nested = outputs(backbone, images)
            still = outputs(backbone, images)
        assert max_difference(teacher, outputs(plain.train(mode), images)) == 0
        assert max_difference(nested, teacher) == 0 and max_difference(still, teacher) == 0
    assert max_difference(outputs(backbone.train(), images), adapted) == 0
    assert max_difference(adapted, teacher) > 1e-4


def test_evaluation_mode_with_gradients_enabled_still_trains_the_adapter(random_images,
                                                                         tiny_backbone):
    backbone = tiny_backbone().eval()
    dense, _ = backbone.encode_image(random_images(backbone))
    dense.sum().backward()
    assert backbone.adapter.shared_blocks.grad.abs().sum() > 0


@pytest.mark.parametrize("training", [True, False])
def test_bf16_autocast_on_cpu_is_finite(training, perturb_adapter, random_images, tiny_backbone):
    backbone = tiny_backbone(finetune="oft_both").train(training)
    perturb_adapter(backbone)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        dense, guidance = backbone.encode_image(random_images(backbone))
        text = backbone.encode_text(["cat", "sky"])
    assert all(torch.isfinite(t.float()).all() for t in (dense, text, *guidance))
    reference = outputs(backbone, random_images(backbone), names=("cat", "sky"))
    assert (dense.float() - reference[0]).abs().max() < 0.1 * reference[0].abs().max()


def test_float64_conversion_drops_caches_and_runs(random_images, tiny_backbone):
    backbone = tiny_backbone().eval()
    images = random_images(backbone)
    single = outputs(backbone, images)
    backbone.double()
    double = outputs(backbone, images.double())
    assert double[0].dtype == torch.float64
    assert max_difference(single, double) < 1e-4


def test_encode_image_rejects_wrong_shapes(tiny_backbone):
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match=r"\(B, 3, 96, 96\)"):
        backbone.encode_image(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("kwargs,message", [
    (dict(architecture="ViT-X/99"), r"Unknown CLIP architecture 'ViT-X/99'.*ViT-B/16.*ViT-L-14-336"),
    (dict(architecture="ViT-B-16-SigLIP"), "does not support"),
    (dict(finetune="everything"), r"CLIP_FINETUNE.*oft_both"),
    (dict(guidance_layers=(3,)), r"CLIP_GUIDANCE_LAYERS.*\[0, 2\]"),
    (dict(resolution=100), "multiple of the patch size 16"),
    (dict(prompt_ensemble="imagenet_select"), "PROMPT_ENSEMBLE_TYPE"),
])
def test_configuration_errors_name_the_problem(kwargs, message, tiny_backbone):
    with pytest.raises(ValueError, match=message):
        tiny_backbone(**kwargs)


def test_image_encoder_is_jit_traceable_for_flop_counting(random_images, tiny_backbone):
    from fvcore.nn import FlopCountAnalysis

    class DenseOnly(torch.nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, images):
            return self.backbone.encode_image(images)[0]

    backbone = tiny_backbone().eval()
    images = random_images(backbone, batch=1)
    analysis = FlopCountAnalysis(DenseOnly(backbone), (images,))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    # 4 blocks' MLPs alone: 4 x 37 tokens x 2 x 128 x 512 multiply-adds (the last block 36 tokens).
    assert analysis.total() > 4 * 36 * 2 * 128 * 512
