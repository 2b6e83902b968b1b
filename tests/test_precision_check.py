"""tools/precision_check.py: fp32 against itself is exact; bf16 moves the scores a little."""
import precision_check  # tools/, on pytest.ini's pythonpath


def test_fp32_is_deterministic_and_bf16_differs_a_little(capsys):
    rows = precision_check.main([
        "--config-file", "configs/synthetic/quickstart.yaml", "--images", "1",
        "--num-classes", "5", "--precisions", "fp32", "bf16",
        "--opts", "MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION", "64", "INPUT.MIN_SIZE_TEST", "64"])
    fp32, bf16 = rows
    assert fp32["precision"] == "fp32" and fp32["max_abs_score_diff"] == 0.0
    assert fp32["changed_pixels"] == 0.0
    assert bf16["finite"] and 0.0 < bf16["max_abs_score_diff"] < 0.1
    assert "| cpu | bf16 |" in capsys.readouterr().out
