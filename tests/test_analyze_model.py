"""tools/analyze_model.py on the tiny CLIP: every field, counts that add up, FLOP handles, memory."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import analyze_model
import cat_seg  # noqa: F401  (registers the model, head and datasets)
from cat_seg.analysis import measure
from cat_seg.analysis import parts as analysis_parts
from helpers.logs import cat_seg_logs

# The tiny AHS-Seg (helpers/configs.py) comes from conftest.py: tiny_cfg, write_tiny_config.


@pytest.fixture(scope="module")
def analysis(tiny_cfg):
    return measure.analyze(tiny_cfg, num_classes=5, warmup=1, iters=2, train_warmup=0,
                                 train_iters=1)


def test_every_field_is_reported(analysis):
    assert analysis["config"]["clip"] == "AHS-Tiny/16"
    assert analysis["config"]["image_size"] == 64 and analysis["config"]["num_classes"] == 5
    assert analysis["config"]["test_path"] == "whole image"
    for key in ("date", "cpu", "cpu_count", "torch_threads", "torch", "device"):
        assert key in analysis["machine"]
    assert set(analysis["params"]) == {"total", "trainable", "inference", "by_part"}
    assert list(analysis["params"]["by_part"]) == list(analysis_parts.parts())
    assert set(analysis["flops"]) >= {"gflops", "by_part_gflops", "skipped_ops"}
    inference = analysis["inference"]
    for key in ("median_s", "min_s", "mean_s", "cpu_median_s", "vocabulary_encoding_s", "iters",
                "warmup"):
        assert inference[key] is not None
    assert len(inference["times_s"]) == len(inference["cpu_times_s"]) == 2
    assert inference["min_s"] <= inference["median_s"] and inference["cpu_median_s"] > 0
    train = analysis["train"]
    assert train["median_s"] > 0 and train["cpu_median_s"] > 0
    assert train["num_classes"] == 16 and train["crop"] == [64, 64]
    for memory in (inference["memory"], train["memory"]):
        assert memory["peak_bytes"] > 0 and memory["delta_bytes"] >= 0 and memory["method"]
    json.dumps(analysis)  # all plain values: --json can write it


def test_parameter_counts_add_up(tiny_cfg, analysis):
    from cat_seg.modeling.clip.oft import HCLIPOrthogonalAdapter

    model = measure.build_analysis_model(tiny_cfg)
    params = analysis["params"]
    by_part = params["by_part"]
    assert params["total"] == sum(p.numel() for p in model.parameters())
    assert params["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(c["total"] for c in by_part.values()) == params["total"]
    adapter = [m for m in model.modules() if isinstance(m, HCLIPOrthogonalAdapter)]
    assert by_part["adapters"]["total"] == sum(p.numel() for p in adapter[0].parameters()) > 0
    assert by_part["head"]["total"] == sum(p.numel() for p in model.sem_seg_head.parameters())
    assert by_part["CLIP"]["total"] > 0 and by_part["CLIP"]["trainable"] == 0
    assert params["inference"] == params["total"] - by_part["adapters"]["total"]


def test_ahs_modules_are_found_by_type(tmp_path, write_tiny_config):
    cfg = measure.load_config(write_tiny_config(tmp_path / "ahs.yaml",
                                                      modules=("HPA", "SDR", "AFR")))
    model = measure.build_analysis_model(cfg)
    params = measure.count_parameters(model, cfg)
    by_part = params["by_part"]
    assert by_part["AFR"]["total"] == sum(p.numel() for p in model.feature_rectification.parameters()) > 0
    assert by_part["HPA"]["total"] == sum(p.numel() for p in model.prototype_alignment.parameters()) == 16
    assert by_part["HPA"]["buffers"] >= 16 * 64  # the prototypes: 16 classes x D = 64
    assert by_part["SDR"]["total"] == 0  # the teacher is CLIP itself, adapters bypassed
    assert params["inference"] == params["total"] - by_part["adapters"]["total"] - 16
    model.set_vocabulary(["sky", "tree", "road"])
    flops = measure.count_flops(model, cfg, measure.test_input(64, torch.device("cpu")))
    assert flops.get("error") is None, flops.get("error")
    assert flops["by_part_gflops"]["AFR"] > 0
    assert flops["by_part_gflops"]["HPA"] == flops["by_part_gflops"]["SDR"] == 0  # training only


def test_flops_by_part_add_up(analysis):
    flops = analysis["flops"]
    assert flops.get("error") is None, flops.get("error")
    parts = flops["by_part_gflops"]
    assert flops["gflops"] > 0 and parts["CLIP"] > 0 and parts["head"] > 0
    assert parts["adapters"] == 0  # folded into CLIP's weights at test time
    assert sum(parts.values()) == pytest.approx(flops["gflops"])
    # Attention is counted (our handle), so it is not among the skipped operators.
    assert "aten::scaled_dot_product_attention" not in flops["skipped_ops"]


def test_attention_flop_handle_counts_both_matmuls():
    from fvcore.nn import FlopCountAnalysis

    class Attention(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    analysis = FlopCountAnalysis(Attention(), (q, k, v))
    analysis.set_op_handle("aten::scaled_dot_product_attention", measure._sdpa_flop_jit)
    assert analysis.total() == 2 * 3 * 5 * 7 * (8 + 4)


def test_peak_memory_sees_a_large_allocation():
    # Measured in a fresh process: late in a long test session, freed pages are reused and the
    # resident set need not grow, whereas here 64 MiB must be new memory.
    code = ("import torch; from cat_seg.analysis import measure\n"
            "with measure.PeakMemory(torch.device('cpu')) as memory:\n"
            "    block = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB, touched\n"
            "    del block\n"
            "print(memory.result()['delta_bytes'])\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) >= 48 * 2 ** 20, done.stdout


def test_compare_cli_writes_ratios_measured_in_one_run(tmp_path, write_tiny_config):
    base = write_tiny_config(tmp_path / "base.yaml")
    wider = tmp_path / "wider.yaml"
    wider.write_text(open(base).read().replace("NUM_LAYERS: 1", "NUM_LAYERS: 2"))
    out, table = tmp_path / "analysis.json", tmp_path / "table.md"
    result = analyze_model.main(["--config-file", base, "--compare", str(wider), "--json", str(out),
                                 "--markdown", str(table), "--num-classes", "4", "--iters", "2",
                                 "--warmup", "1", "--no-train", "--no-flops"])
    saved = json.loads(out.read_text())
    assert set(saved) == {"base", "compare", "ratios"}
    assert [r["label"] for r in [saved["base"], *saved["compare"]]] == ["base", "wider"]
    ratios = saved["ratios"][0]
    added = result["compare"][0]["params"]["total"] - result["base"]["params"]["total"]
    assert ratios["params"] == pytest.approx(
        result["compare"][0]["params"]["total"] / result["base"]["params"]["total"])
    assert added > 0  # a second aggregation layer
    assert ratios["inference latency"] > 0 and ratios["inference CPU time"] > 0
    assert ratios["training step"] is None and ratios["FLOPs"] is None  # not measured
    assert saved["base"]["config"]["clip_weights"] == "random"
    rows = [line.split(" | ") for line in table.read_text().splitlines()]
    assert rows[0][0] == "| config" and len(rows) == 4
    assert rows[2][0] == "| base" and rows[2][3] == "0" and rows[2][6] == "1.000"
    assert rows[3][0] == "| wider" and rows[3][3] == f"{added:+,}" and rows[3][4] == "-"
    assert float(rows[3][6]) == pytest.approx(ratios["inference latency"], abs=1e-3)


def test_training_only_run_has_no_inference_section(tmp_path, caplog, write_tiny_config):
    base = write_tiny_config(tmp_path / "base.yaml")
    with cat_seg_logs(caplog):  # the report is logged, as lines
        result = analyze_model.main(["--config-file", base, "--num-classes", "4",
                                     "--no-inference", "--no-flops", "--train-warmup", "0",
                                     "--train-iters", "1"])
    assert "inference" not in result and "flops" not in result
    assert result["train"]["median_s"] > 0 and result["train"]["memory"]["peak_bytes"] > 0
    printed = caplog.text
    assert "training step: median" in printed and "inference: median" not in printed


def test_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        measure.load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="positive"):
        measure.vocabulary(0)
    assert measure.vocabulary(3) == ["person", "bicycle", "car"]
    assert measure.vocabulary(173)[-2:] == ["class 171", "class 172"]


def test_profile_lists_the_top_operators_of_a_forward_and_a_training_step(tmp_path,
                                                                          tiny_config_file):
    markdown = tmp_path / "profile.md"
    result = analyze_model.main(["--config-file", tiny_config_file, "--profile", "5",
                                 "--num-classes", "4", "--warmup", "0", "--train-warmup", "0",
                                 "--markdown", str(markdown), "--json", str(tmp_path / "p.json")])
    for phase in ("inference", "training step"):
        top = result[phase]["top"]
        assert len(top) == 5 and top == sorted(top, key=lambda row: -row[1])
        assert all(ms >= 0 and calls >= 1 for _, ms, calls in top)
        assert "Self CPU" in result[phase]["table"]
    assert json.loads((tmp_path / "p.json").read_text())["inference"]["top"][0][0] == \
        result["inference"]["top"][0][0]
    text = markdown.read_text()
    assert text.startswith("### Profile: ") and "training step (sorted by" in text
