#!/usr/bin/env python
"""AHS-Seg training and evaluation entry point (the library: cat_seg.engine).

    python train_net.py --config-file configs/vitb_384_ahs.yaml --num-gpus 4
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --resume            # continue from last_checkpoint

Multi-node: ``--num-machines N --machine-rank R --dist-url tcp://HOST:PORT`` on every node.
``ahs-train`` (installed by ``pip install -e .``) is the same command.
"""
from cat_seg.engine.launch import default_argument_parser, launch_from_args

if __name__ == "__main__":
    launch_from_args(default_argument_parser().parse_args(), name="train_net")
