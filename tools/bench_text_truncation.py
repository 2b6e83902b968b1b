#!/usr/bin/env python
"""Measure the text encoder's context truncation: same embeddings, fewer positions, how fast.

    python tools/bench_text_truncation.py                          # ViT-B/16, COCO-Stuff names
    python tools/bench_text_truncation.py --architecture ViT-L/14@336px --every 1 --repeats 5

CLIP gets random weights (the cost does not depend on them). Prints the prompts, the positions
run (of the context's 77), the largest difference between the two embeddings and the median time
of each over ``--repeats`` runs. A timing, so it belongs here and not in the test suite.
"""
import argparse
import json

import torch

from cat_seg.analysis.measure import DEFAULT_VOCABULARY
from cat_seg.analysis.text_truncation import measure_text_truncation
from cat_seg.modeling.clip import CLIPBackbone


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architecture", default="ViT-B/16")
    parser.add_argument("--names", default=DEFAULT_VOCABULARY, help="JSON list of class names")
    parser.add_argument("--every", type=int, default=4, help="use every k-th name (default 4)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.every < 1 or args.repeats < 1:
        raise SystemExit("[bench_text_truncation] --every and --repeats must be at least 1")
    with open(args.names) as f:
        names = json.load(f)[::args.every]
    torch.manual_seed(0)
    backbone = CLIPBackbone(architecture=args.architecture, weights="random",
                            finetune="oft_both").eval()
    r = measure_text_truncation(backbone, names, repeats=args.repeats)
    print(f"{r['prompts']} prompts, {args.architecture} text encoder: {r['positions']} of "
          f"{r['context_length']} positions, max |diff| {r['max_abs_diff']:.2e}, "
          f"{r['seconds_full']:.3f} s -> {r['seconds_truncated']:.3f} s (x{r['speedup']:.2f}, "
          f"median of {args.repeats})")


if __name__ == "__main__":
    main()
