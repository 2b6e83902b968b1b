"""tools/convert_checkpoint.py: an official CAT-Seg checkpoint -> AHS-Seg's layout, same outputs.

The CAT-Seg checkpoint is synthesised from a tiny AHS-Seg model (CAT-Seg's ``attention``
fine-tuning) by the inverse renaming (tests/helpers/catseg_layout.py), written out independently
of the converter.
"""
from pathlib import Path

import pytest
import torch

import convert_checkpoint  # tools/, on pytest.ini's pythonpath
from cat_seg.engine import catseg_checkpoint as conversion
from helpers.catseg_layout import TINY_YAML, tiny_model, write_catseg_checkpoint


@pytest.fixture(scope="module")
def catseg_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("catseg") / "model_final.pth"
    return write_catseg_checkpoint(path, seed=0), path


def test_converted_checkpoint_gives_the_same_weights_and_outputs(catseg_checkpoint, tmp_path):
    original, path = catseg_checkpoint
    out = tmp_path / "converted.pth"
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    convert_checkpoint.main([str(path), str(out), "--config-file", str(config)])

    restored = tiny_model(seed=1)
    restored.load_state_dict(torch.load(out, weights_only=True)["model"], strict=True)
    for key, value in original.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value, rtol=0, atol=0)
    image = torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8)
    for model in (original, restored):
        model.set_vocabulary(["wall", "floor, flooring", "person", "sky"])
    for sliding in (False, True):
        original.sliding_window = restored.sliding_window = sliding
        with torch.no_grad():
            expected = original([{"image": image}])[0]["sem_seg"]
            torch.testing.assert_close(restored([{"image": image}])[0]["sem_seg"], expected,
                                       rtol=0, atol=0)


def test_files_that_would_run_code_are_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Path("not a tensor")}, path)
    with pytest.raises(conversion.ConversionError, match="refused"):
        conversion.load_catseg_checkpoint(str(path))


def test_foreign_checkpoints_fail_clearly(catseg_checkpoint, tmp_path):
    _, path = catseg_checkpoint
    state_dict = conversion.load_catseg_checkpoint(str(path))
    with pytest.raises(conversion.ConversionError, match="H-CLIP"):
        conversion.convert_catseg_state_dict(
            {**state_dict, "sem_seg_head.predictor.attn_q_proj_oft_layer_R": torch.zeros(1)})
    with pytest.raises(conversion.ConversionError, match="no CLIP weights"):
        conversion.convert_catseg_state_dict(
            {k: v for k, v in state_dict.items() if "clip_model" not in k})
    wider = tmp_path / "wider.yaml"
    wider.write_text(TINY_YAML.replace("HIDDEN_DIMS: 32", "HIDDEN_DIMS: 64"))
    with pytest.raises(conversion.ConversionError, match="do not fit"):
        convert_checkpoint.main([str(path), str(tmp_path / "x.pth"), "--config-file", str(wider)])
    with pytest.raises(FileNotFoundError):
        conversion.load_catseg_checkpoint(str(tmp_path / "missing.pth"))


def test_a_truncated_file_is_named_as_such(catseg_checkpoint, tmp_path):
    _, path = catseg_checkpoint
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(conversion.ConversionError, match="not a complete checkpoint file.*truncated"):
        convert_checkpoint.main([str(cut), str(tmp_path / "x.pth")])
    assert not (tmp_path / "x.pth").exists()


def test_hugging_face_arguments_name_the_resolve_url():
    args = convert_checkpoint.parse_args(["--hf-repo", "hamacojr/CAT-Seg", "--hf-file",
                                          "model_base.pth", "out.pth"])
    assert args.source == "https://huggingface.co/hamacojr/CAT-Seg/resolve/main/model_base.pth"
    assert args.output == "out.pth"
    args = convert_checkpoint.parse_args(["--hf-repo", "spaces/hamacojr/CAT-Seg-weights",
                                          "--hf-file", "model_large.pth", "out.pth"])
    assert args.source == \
        "https://huggingface.co/spaces/hamacojr/CAT-Seg-weights/resolve/main/model_large.pth"
    with pytest.raises(SystemExit):
        convert_checkpoint.parse_args(["--hf-repo", "hamacojr/CAT-Seg", "out.pth"])
    with pytest.raises(SystemExit):
        convert_checkpoint.parse_args(["only_one.pth"])
