"""Loading CLIP weights: OpenAI-layout files, OpenAI's TorchScript archive, errors."""
import open_clip
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cat_seg.modeling.clip import CLIPBackbone, convert_clip_state_dict
from cat_seg.modeling.clip.architectures import resolve_architecture
from cat_seg.modeling.clip.checkpoint import is_torchscript_archive, resolve_weights

NAMES = ["cat", "traffic light", "sky"]


def outputs(backbone, images):
    with torch.no_grad():
        dense, guidance = backbone.encode_image(images)
        return [dense, *guidance, backbone.encode_text(NAMES)]


def assert_identical(a, b):
    assert all(torch.equal(x, y) for x, y in zip(a, b))


class _Archive(nn.Module):
    """A TorchScript-able tree of buffers: how OpenAI's .pt archives store their weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_openai_torchscript_archive(state_dict, path):
    """Write ``state_dict`` as OpenAI distributes CLIP: fp16 TorchScript archive with metadata."""
    root = _Archive()
    entries = {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}
    entries.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77),
                   vocab_size=torch.tensor(49408))
    for key, value in entries.items():
        *path_parts, leaf = key.split(".")
        module = root
        for part in path_parts:
            if part not in module._modules:
                module.add_module(part, _Archive())
            module = module._modules[part]
        module.register_buffer(leaf, value.clone())
    torch.jit.save(torch.jit.script(root), str(path))


def test_openai_layout_state_dict_file_round_trip_gives_identical_outputs(tmp_path, tiny_backbone,
                                                                          openai_layout,
                                                                          random_images):
    source = tiny_backbone(finetune="frozen")
    path = tmp_path / "tiny_openai_layout.pt"
    state_dict = openai_layout(source.clip.state_dict())
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in state_dict
    torch.save(state_dict, path)
    loaded = tiny_backbone(seed=7, weights=str(path), finetune="frozen")
    images = random_images(source)
    assert_identical(outputs(loaded, images), outputs(source, images))


def test_wrapped_prefixed_and_safetensors_files_load(tmp_path, tiny_backbone, openai_layout,
                                                     random_images):
    source = tiny_backbone(finetune="frozen")
    state_dict = openai_layout(source.clip.state_dict())
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}}, wrapped)
    safetensors = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(safetensors))
    images = random_images(source)
    for path in (wrapped, safetensors):
        assert_identical(outputs(tiny_backbone(seed=3, weights=str(path), finetune="frozen"), images),
                         outputs(source, images))


def test_openai_torchscript_archive_loads_in_fp32_with_quick_gelu(tmp_path, tiny_backbone,
                                                                  openai_layout):
    source = tiny_backbone(finetune="frozen")
    path = tmp_path / "ViT-tiny.pt"
    save_openai_torchscript_archive(openai_layout(source.clip.state_dict()), path)
    assert is_torchscript_archive(str(path)) and not is_torchscript_archive(__file__)
    # OpenAI's archives imply QuickGELU, whatever name the architecture was given under.
    assert resolve_weights(resolve_architecture("ViT-B-16"), str(path)).quick_gelu
    loaded = tiny_backbone(seed=9, weights=str(path), finetune="frozen")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    expected = {k: v.half().float() for k, v in source.clip.state_dict().items()}
    loaded_state = loaded.clip.state_dict()
    assert all(torch.equal(loaded_state[k], v) for k, v in expected.items())


def test_catseg_split_attention_layout_converts_to_the_backbone_layout(tiny_backbone,
                                                                       openai_layout):
    source = tiny_backbone(finetune="frozen")
    packed = openai_layout(source.clip.state_dict())
    catseg = {}
    for key, value in packed.items():
        if key.endswith("attn.in_proj_weight"):
            prefix = key[: -len("in_proj_weight")]
            for name, part in zip("qkv", value.chunk(3)):
                catseg[f"{prefix}{name}_proj_weight"] = part
        else:
            catseg[key] = value
    for converted in (convert_clip_state_dict(catseg), convert_clip_state_dict(packed)):
        assert converted.keys() == source.clip.state_dict().keys()
        assert all(torch.equal(converted[k], v) for k, v in source.clip.state_dict().items())


def test_checkpoint_of_another_architecture_lists_the_mismatches(tmp_path, tiny_backbone):
    other = open_clip.model.CLIP(
        embed_dim=64, quick_gelu=True,
        vision_cfg=dict(image_size=224, layers=3, width=128, patch_size=16, head_width=64),
        text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=2))
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError) as error:
        tiny_backbone(weights=str(path))
    message = str(error.value)
    assert "does not match the configured architecture" in message
    assert "shape mismatches" in message
    assert "positional_embedding: checkpoint (77, 64) vs model (77, 128)" in message
    assert "missing keys" in message and "visual.transformer.resblocks.3.ln_1.weight" in message


def test_non_state_dict_file_is_rejected(tmp_path, tiny_backbone):
    path = tmp_path / "training_checkpoint.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "iteration": 5}, path)
    with pytest.raises(ValueError, match="does not hold a CLIP state dict"):
        tiny_backbone(weights=str(path))


def test_missing_file_and_unknown_tag_errors(tmp_path, tiny_backbone):
    with pytest.raises(FileNotFoundError, match="CLIP checkpoint file not found"):
        tiny_backbone(weights=str(tmp_path / "absent.pt"))
    with pytest.raises(ValueError, match="no published weights"):
        tiny_backbone(weights="openai")
    with pytest.raises(ValueError, match=r"pretrained tags for 'ViT-B-16'.*openai"):
        CLIPBackbone(architecture="ViT-B/16", weights="not_a_tag")


def test_download_failure_says_how_to_pass_a_local_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(RuntimeError) as error:
        CLIPBackbone(architecture="ViT-B/16", weights="openai")
    message = str(error.value)
    assert "network is unreachable" in message and "CLIP_WEIGHTS to its local path" in message
    assert "https://openaipublic.azureedge.net/clip/models/" in message and "ViT-B-16.pt" in message
