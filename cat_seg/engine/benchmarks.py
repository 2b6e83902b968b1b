"""Evaluate one model on several benchmarks with the test protocol and write a results table
(tools/eval_benchmarks.py, eval_ahs.sh).

Writes OUT/results.json (every metric of every benchmark, and its evaluation speed: images,
seconds, images/s), OUT/results.md (mIoU per benchmark plus their mean, the chance level, the
speed and, with TEST.FROZEN_CLIP_REFERENCE, the frozen CLIP's zero-shot mIoU), OUT/sem_seg_per_class_<dataset>.csv and, with ``vis`` N, N pictures per benchmark
under OUT/vis/ (image | ground truth | prediction, with a class legend).
The benchmarks default to the config's TEST.BENCHMARKS. All of them are checked before the model
runs: a missing one is reported with its reason and the run stops unless ``skip_missing``.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import launch
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators, inference_on_dataset
from detectron2.utils import comm
from tqdm import tqdm

from ..config import build_config_or_explain
from ..data import ALL_BENCHMARK_DATASETS
from ..data.folder_dataset import folder_benchmark_datasets, register_config_folder_datasets
from ..data.label_io import read_image_rgb, read_record_label
from ..evaluation.zero_shot import dense_zero_shot
from ..utils.paths import check_output_dir
from ..utils.visualization import comparison_panel
from .checkpointer import AtomicCheckpointer, CheckpointMismatchError
from .launch import setup, weights_record
from .trainer import Trainer

__all__ = ["TEST_PROTOCOL", "ProgressLoader", "VisualizationWriter", "check_before_evaluation",
           "check_benchmarks", "evaluate_benchmarks", "launch_evaluation", "throughput",
           "write_reports"]

# The references' test protocol: sliding window, no pooling before class aggregation.
TEST_PROTOCOL = ["TEST.SLIDING_WINDOW", "True", "MODEL.SEM_SEG_HEAD.POOLING_SIZES", "[1, 1]"]


class VisualizationWriter(DatasetEvaluator):
    """Saves the first ``count`` predictions of a dataset as comparison pictures (main process)."""

    def __init__(self, dataset_name: str, output_dir: str, count: int):
        self.meta = MetadataCatalog.get(dataset_name)
        self.output_dir, self.count, self.written = output_dir, count, 0

    def reset(self):
        self.written = 0

    def process(self, inputs, outputs):
        if not comm.is_main_process():
            return
        for inp, out in zip(inputs, outputs):
            if self.written >= self.count:
                return
            prediction = out["sem_seg"].argmax(dim=0).cpu().numpy()
            image = read_image_rgb(inp["file_name"])
            gt = read_record_label(inp, self.meta.ignore_label) \
                if "sem_seg_file_name" in inp else None
            panel = comparison_panel(image, prediction, self.meta.stuff_classes, gt,
                                     ignore_label=self.meta.ignore_label)
            os.makedirs(self.output_dir, exist_ok=True)
            stem = os.path.splitext(os.path.basename(inp["file_name"]))[0]
            panel.save(os.path.join(self.output_dir, f"{stem}.png"))
            self.written += 1

    def evaluate(self):
        return {}


class ProgressLoader:
    """A test loader that shows a progress bar with the rate and ETA (main process, on stderr).

    detectron2's ``inference_on_dataset`` only logs progress every few seconds; a user waiting on
    A-847's 2,000 images wants to see it move. The bar wraps the loader: nothing else changes."""

    def __init__(self, loader, description: str):
        self.loader, self.description = loader, description

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iter(tqdm(self.loader, total=len(self.loader), desc=self.description,
                         unit="image", dynamic_ncols=True, mininterval=2.0,
                         disable=not comm.is_main_process()))


def throughput(num_images: int, seconds: float) -> dict:
    """``{"images", "seconds", "images_per_s"}`` of one benchmark's evaluation (model, data
    loading and metric updates: what the user waits for)."""
    return {"images": num_images, "seconds": round(seconds, 3),
            "images_per_s": round(num_images / seconds, 3) if seconds > 0 else None}


def check_benchmarks(names):
    """Split benchmark short names into (available {name: dataset}, missing {name: reason})."""
    # Built-in benchmarks, then the datasets registered from DATASETS.FOLDER_DATASETS.
    known = {**ALL_BENCHMARK_DATASETS, **folder_benchmark_datasets()}
    available, missing = {}, {}
    for name in names:
        if name not in known:
            missing[name] = (f"unknown benchmark; known: {', '.join(known)} (a dataset of your "
                             "own: name its description in DATASETS.FOLDER_DATASETS, see "
                             "docs/custom_datasets.md)")
            continue
        try:
            DatasetCatalog.get(known[name])
            available[name] = known[name]
        except (FileNotFoundError, ValueError, OSError) as e:
            missing[name] = str(e)
    return available, missing


def write_reports(results, output_dir):
    """OUT/results.json and OUT/results.md. ``results[name]["sem_seg"]`` is the evaluator's
    dictionary; an optional ``results[name]["frozen_clip"]`` the frozen CLIP's zero-shot one."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    names = list(results)
    lines = ["| metric | " + " | ".join(names + ["mean"]) + " |", "|---|" + "---|" * (len(names) + 1)]

    def row(label, values):
        cells = [f"{v:.1f}" for v in values + [float(np.mean(values))]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    # mIoU: detectron2 0.6's formula (the published numbers); mIoU_gt: mean over GT classes.
    for metric in ("mIoU", "mIoU_gt"):
        row(metric, [results[n]["sem_seg"][metric] for n in names])
    notes = []
    if all("frozen_clip" in results[n] for n in names):
        row("frozen CLIP zero-shot mIoU", [results[n]["frozen_clip"]["mIoU"] for n in names])
        notes.append("frozen CLIP zero-shot: the CLIP weights alone (adapters bypassed, no head, no "
                     "segmentation training), argmax of the patch-text cosine on the whole image")
    row("chance mIoU", [results[n]["sem_seg"]["chance_mIoU"] for n in names])
    notes.append("chance: expected mIoU of uniformly random predictions on the same labels")
    speed = ""
    if all("throughput" in results[n] for n in names):
        speed = ("\nEvaluation speed (images/s, this process's wall clock, data loading "
                 "included): " + ", ".join(f"{n} {results[n]['throughput']['images_per_s']:.2f}"
                                           for n in names) + ".\n")
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write("Results (%), test protocol: sliding window, pooling [1, 1]. mIoU: detectron2 0.6's "
                "formula (as published); mIoU_gt: mean over the classes present in the ground "
                "truth; " + "; ".join(notes) + ".\n\n" + "\n".join(lines) + "\n" + speed)
    return "\n".join(lines)


def evaluate_benchmarks(args):
    """One process's evaluation. ``args``: ``config_file``, ``weights``, ``output``, ``opts``,
    ``benchmarks`` (comma-separated short names, "" = the config's), ``skip_missing``, ``vis``."""
    cfg = setup(argparse.Namespace(config_file=args.config_file, opts=TEST_PROTOCOL + args.opts
                                   + ["MODEL.WEIGHTS", args.weights, "OUTPUT_DIR", args.output],
                                   eval_only=True, resume=False))
    names = args.benchmarks.split(",") if args.benchmarks else list(cfg.TEST.BENCHMARKS)
    available, missing = check_benchmarks(names)
    for name, reason in missing.items():
        print(f"[eval] MISSING {name}: {reason}", file=sys.stderr)
    if missing and not args.skip_missing:
        raise SystemExit(f"[eval] {len(missing)} benchmark(s) missing (see above); prepare them "
                         "or pass --skip-missing (SKIP_MISSING=1 for eval_ahs.sh)")
    if not available:
        raise SystemExit("[eval] no benchmark to evaluate")

    model = Trainer.build_model(cfg)
    checkpointer = AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR,
                                      allow_unexpected=cfg.MODEL.ALLOW_UNEXPECTED_WEIGHTS)
    try:
        checkpointer.load(cfg.MODEL.WEIGHTS)
    except CheckpointMismatchError as error:
        raise SystemExit(f"[eval] {error}")
    weights = weights_record(cfg.MODEL.WEIGHTS, checkpointer)
    if checkpointer.ignored_keys:
        print(f"[eval] MODEL.ALLOW_UNEXPECTED_WEIGHTS: {weights['ignored_keys']} weights of "
              f"{cfg.MODEL.WEIGHTS} ignored ({', '.join(weights['ignored_modules'])}); "
              "results.json records it", file=sys.stderr)
    model.eval()
    results = {}
    for name, dataset in available.items():
        # The evaluator writes the per-class CSV (IoU, accuracy, pixel counts) into the folder.
        evaluators = [Trainer.build_evaluator(cfg, dataset, output_folder=args.output)]
        if args.vis:
            evaluators.append(VisualizationWriter(dataset, os.path.join(args.output, "vis", name),
                                                  args.vis))
        loader = ProgressLoader(Trainer.build_test_loader(cfg, dataset), f"[eval] {name}")
        start = time.perf_counter()
        results[name] = inference_on_dataset(model, loader, DatasetEvaluators(evaluators))
        # All images of the benchmark (under DDP each process runs its share in parallel).
        speed = throughput(len(loader.loader.dataset), time.perf_counter() - start)
        if results[name] is not None:
            results[name]["weights"] = weights
            results[name]["throughput"] = speed
            print(f"[eval] {name}: {speed['images']} images in {speed['seconds']:.1f} s "
                  f"({speed['images_per_s']:.2f} images/s)", file=sys.stderr)
        if cfg.TEST.FROZEN_CLIP_REFERENCE and comm.is_main_process():
            results[name]["frozen_clip"] = dense_zero_shot(model.backbone, dataset)
    if comm.is_main_process():
        table = write_reports(results, args.output)
        print(table)
        if missing:
            print(f"[eval] skipped (missing): {', '.join(missing)}")
    return results


def check_before_evaluation(args) -> None:
    """Before any process starts or any model is built: the weights file, the config (with the
    test protocol) and the output folder. Raises ``OSError`` / ``ValueError`` with one line."""
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"weights file {args.weights} does not exist; train first "
                                "(run_ahs.sh) or pass the path of a checkpoint")
    cfg = build_config_or_explain(args.config_file, TEST_PROTOCOL + args.opts)
    register_config_folder_datasets(cfg)  # a bad dataset description stops here, in one line
    check_output_dir(args.output, "output folder")


def launch_evaluation(args):
    """:func:`check_before_evaluation` (a failure exits with one line ``[eval] message``), then
    :func:`evaluate_benchmarks` in ``args.num_gpus`` processes per machine."""
    try:
        check_before_evaluation(args)
    except (OSError, ValueError) as error:
        raise SystemExit(f"[eval] {error}")
    launch(evaluate_benchmarks, args.num_gpus, num_machines=args.num_machines,
           machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
