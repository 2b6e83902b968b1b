"""``ahs-seg train``: training and ``--eval-only`` evaluation, detectron2's command line
(:func:`cat_seg.engine.launch.cli`; ``python train_net.py`` and ``ahs-train`` are the same).

    ahs-seg train --config-file configs/vitb_384_ahs.yaml --num-gpus 4
    ahs-seg train --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    ahs-seg train --config-file CFG --resume
    ahs-seg train --config-file CFG --num-machines 2 --machine-rank R --dist-url tcp://HOST:PORT
"""


def main(argv=None) -> None:
    from ..engine.launch import cli

    cli(argv, name="ahs-seg train")
