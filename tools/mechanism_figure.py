#!/usr/bin/env python
"""Mechanism figures of trained runs: forgetting, HPA's prototypes, AFR's gate, SDR's dose.

    python tools/mechanism_figure.py output/research/ablation/full/seed0 [RUN ...]

Writes RUN/mechanisms.png and RUN/mechanisms.json for every run folder (config.yaml +
model_final.pth) and prints the numbers. The work is cat_seg.analysis.mechanisms'.
"""
import argparse
import json

from cat_seg.analysis.mechanisms import mechanism_figures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (config.yaml + model_final.pth)")
    args = parser.parse_args(argv)
    for run in args.runs:
        try:
            figures = mechanism_figures(run)
        except (OSError, ValueError) as error:
            raise SystemExit(f"[mechanism_figure] {run}: {error}")
        shown = {k: v for k, v in figures.items() if k != "sdr_curve"}
        if shown.get("hpa"):
            shown["hpa"] = {k: v for k, v in shown["hpa"].items() if k != "cosines"}
        print(f"{run}/mechanisms.png", json.dumps(shown, indent=1))


if __name__ == "__main__":
    main()
