#!/usr/bin/env python
"""Same model, other device or precision: how far do the segmentation scores move?

    python tools/precision_check.py --config-file configs/vitb_384_hclip.yaml            # CPU
    python tools/precision_check.py --config-file configs/vitb_384_hclip.yaml --device cuda

Builds the config's model once (random CLIP weights unless ``--keep-clip-weights``, seeded head:
the differences depend on the arithmetic, not on training), runs the model's own test-time path
on ``--images`` random images with a ``--num-classes`` vocabulary on the CPU in fp32 (the
reference), then on ``--device`` in fp32 (TF32 off) and with the model's ``TEST.PRECISION``
bf16 / fp16 (fp16 on GPU only), timing each. Prints one markdown row per run: max |score difference| to the CPU fp32
scores (scores are the sigmoid probabilities the evaluation takes the argmax of), the fraction
of pixels whose predicted class changes, and seconds per image. On the CPU, fp32 against itself
is the check that runs are deterministic (0).

The CPU fp32 path equals the public CAT-Seg's outputs (docs/benchmarks.md), so a small fp32
difference on the GPU carries that equivalence over to the GPU.
"""
import argparse
import copy
import statistics
import time
from typing import Dict, List

import torch

from cat_seg.analysis.measure import build_analysis_model, load_config, test_input, vocabulary
from cat_seg.utils.console import prepare_entry_point

# Short name -> the model's TEST.PRECISION.
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def scores_of(model, inputs: List[Dict], precision: str) -> List[torch.Tensor]:
    """The model's scores of ``inputs`` with TEST.PRECISION = ``precision``."""
    model.test_precision = precision
    with torch.no_grad():
        return [model([x])[0]["sem_seg"].cpu() for x in inputs]


def timed_scores(model, inputs, precision: str, device: torch.device):
    scores_of(model, inputs[:1], precision)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    scores = scores_of(model, inputs, precision)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return scores, (time.perf_counter() - start) / len(inputs)


def main(argv=None) -> List[Dict]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--image-size", type=int, help="default: the CLIP resolution")
    parser.add_argument("--num-classes", type=int, default=171)
    parser.add_argument("--precisions", nargs="+", choices=sorted(PRECISIONS),
                        help="default: fp32 bf16 (+ fp16 on GPU)")
    parser.add_argument("--keep-clip-weights", action="store_true")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        # fp32 means fp32: TF32 matmuls would already move the scores by ~1e-3.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    precisions = args.precisions or (["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else []))
    cfg = load_config(args.config_file, args.opts, random_weights=not args.keep_clip_weights,
                      device="cpu")
    model = build_analysis_model(cfg)
    model.set_vocabulary(vocabulary(args.num_classes))
    size = args.image_size or cfg.MODEL.SEM_SEG_HEAD.CLIP_RESOLUTION
    inputs_cpu = [test_input(size, torch.device("cpu"), seed=i) for i in range(args.images)]
    reference, reference_s = timed_scores(model, inputs_cpu, "float32", torch.device("cpu"))
    if device.type != "cpu":
        model = copy.deepcopy(model).to(device)
        model.set_vocabulary(vocabulary(args.num_classes))
    inputs = [{**x, "image": x["image"].to(device)} for x in inputs_cpu]
    rows = []
    print(f"{args.config_file}, {args.images} random {size}² image(s), {args.num_classes} classes, "
          f"test path {'sliding window' if cfg.TEST.SLIDING_WINDOW else 'whole image'}; "
          f"reference: CPU fp32, {reference_s:.3f} s/image\n")
    print("| device | precision | max abs score diff | pixels whose class changes | s / image |")
    print("|---|---|---|---|---|")
    for name in precisions:
        if name == "fp16" and device.type == "cpu":
            raise SystemExit("fp16 autocast is a GPU precision; use bf16 on the CPU")
        scores, seconds = timed_scores(model, inputs, PRECISIONS[name], device)
        diff = max((s - r).abs().max().item() for s, r in zip(scores, reference))
        changed = statistics.mean((s.argmax(0) != r.argmax(0)).float().mean().item()
                                  for s, r in zip(scores, reference))
        finite = all(torch.isfinite(s).all() for s in scores)
        rows.append({"device": str(device), "precision": name, "max_abs_score_diff": diff,
                     "changed_pixels": changed, "seconds_per_image": seconds, "finite": finite})
        print(f"| {device} | {name} | {diff:.2e}{'' if finite else ' (NON-FINITE)'} | "
              f"{100 * changed:.3f} % | {seconds:.3f} |")
    return rows


if __name__ == "__main__":
    prepare_entry_point()
    main()
