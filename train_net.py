#!/usr/bin/env python
"""AHS-Seg training and evaluation entry point (the library: cat_seg.engine).

    python train_net.py --config-file configs/vitb_384_ahs.yaml --num-gpus 4
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --resume            # continue from last_checkpoint

Multi-node: ``--num-machines N --machine-rank R --dist-url tcp://HOST:PORT`` on every node.
``ahs-seg train`` and ``ahs-train`` (installed by ``pip install -e .``) are the same command.
"""
from cat_seg.engine.launch import default_argument_parser, launch_from_args
from cat_seg.utils.console import prepare_entry_point

if __name__ == "__main__":
    prepare_entry_point()
    launch_from_args(default_argument_parser().parse_args(), name="train_net")
