"""The ``ahs-seg`` command: one entry point with a subcommand per task (see :mod:`.main`).

    ahs-seg --help
    ahs-seg train --config-file configs/vitb_384_ahs.yaml --num-gpus 4
    python -m cat_seg.cli eval --config-file CFG --weights W --output OUT
"""
