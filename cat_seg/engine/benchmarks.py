"""Evaluate one model on several benchmarks with the test protocol and write a results table
(tools/eval_benchmarks.py, eval_ahs.sh).

Writes OUT/results.json (every metric of every benchmark, and its evaluation speed: images,
seconds, images/s), OUT/results.md (mIoU per benchmark plus their mean, the chance level, the
speed and, with TEST.FROZEN_CLIP_REFERENCE, the frozen CLIP's zero-shot mIoU),
OUT/sem_seg_per_class_<dataset>.csv and, with ``vis`` N, N pictures per benchmark under
OUT/vis/<benchmark>/ (image | ground truth | prediction, with a class legend) and OUT/vis/index.md.
The benchmarks default to the config's TEST.BENCHMARKS. All of them are checked before the model
runs: a missing one is reported with its reason and the run stops unless ``skip_missing``.

One folder is one model's truth (:mod:`cat_seg.utils.results_folder`): the run holds OUT/.lock
(a second evaluation into OUT stops), first moves an earlier run's results to
OUT/previous/<time>/, and every file it writes states the weights (size, SHA-256), the config,
the dates and whether the run was complete (JSON: each benchmark's "run"; Markdown: a header;
CSV: leading ``#`` lines). results.json and results.md appear only when every benchmark is done;
until then the figures so far are in results.partial.json, marked incomplete. Every file is
written under a temporary name and renamed.
"""
import argparse
import json
import logging
import os
import time
from typing import Optional
from urllib.parse import quote

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import launch
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators, inference_on_dataset
from detectron2.utils import comm
from tqdm import tqdm

from ..config import build_config_or_explain, check_config_paths
from ..data import ALL_BENCHMARK_DATASETS
from ..data.folder_dataset import folder_benchmark_datasets, register_config_folder_datasets
from ..data.label_io import read_image_rgb, read_record_label
from ..data.paths import check_dataset_root
from ..evaluation.generalized import format_generalized_table
from ..evaluation.zero_shot import dense_zero_shot
from ..utils.file_names import MAX_NAME_BYTES, unique_names
from ..utils.paths import check_output_dir, require_file
from ..utils.results_folder import (FolderInUseError, RunRecord, file_fingerprint, folder_lock,
                                    read_status, retire_previous_results, write_atomic,
                                    write_status)
from ..utils.visualization import comparison_panel
from .checkpointer import AtomicCheckpointer, CheckpointMismatchError, CheckpointReadError
from .launch import setup, weights_record
from .trainer import DatasetInputError, Trainer, one_line

__all__ = ["TEST_PROTOCOL", "ProgressLoader", "VisualizationWriter", "check_before_evaluation",
           "check_benchmarks", "evaluate_benchmarks", "launch_evaluation", "throughput",
           "write_per_class_table", "write_progress", "write_reports", "write_vis_index"]

logger = logging.getLogger(__name__)

# The references' test protocol: sliding window, no pooling before class aggregation.
TEST_PROTOCOL = ["TEST.SLIDING_WINDOW", "True", "MODEL.SEM_SEG_HEAD.POOLING_SIZES", "[1, 1]"]


class VisualizationWriter(DatasetEvaluator):
    """Saves the first ``count`` predictions of a dataset as comparison pictures (main process)."""

    def __init__(self, dataset_name: str, output_dir: str, count: int):
        self.meta = MetadataCatalog.get(dataset_name)
        self.output_dir, self.count, self.written = output_dir, count, 0
        self.pictures = []  # file names written, in order
        self._taken = set()  # their names, case-folded: two images never share a picture

    def reset(self):
        self.written = 0
        self.pictures = []
        self._taken = set()

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
            # The image's file stem as a valid name; images of the same stem in two folders
            # (or differing in case only) get _2, _3, ...
            stem = unique_names([os.path.splitext(os.path.basename(inp["file_name"]))[0]],
                                MAX_NAME_BYTES - len("..png.tmp.1234567"), fallback="image",
                                taken=self._taken)[0]
            path = os.path.join(self.output_dir, f"{stem}.png")
            temporary = os.path.join(self.output_dir, f".{stem}.png.tmp.{os.getpid()}")
            panel.save(temporary, format="PNG")
            os.replace(temporary, path)
            self.pictures.append(f"{stem}.png")
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


def _stamped(results, record: Optional[RunRecord]):
    """A copy of ``results`` whose every benchmark carries ``record``'s stamp under "run"."""
    done = list(results)
    stamped = {name: dict(value) for name, value in results.items()}
    if record is not None:
        for value in stamped.values():
            value["run"] = record.stamp(done)
    return stamped


def write_progress(results, output_dir, record: RunRecord) -> None:
    """OUT/results.partial.json: the benchmarks finished so far, stamped incomplete until all
    are (results.json is written only by :func:`write_reports`, at the end)."""
    write_atomic(os.path.join(output_dir, "results.partial.json"),
                 json.dumps(_stamped(results, record), indent=2) + "\n")


def write_per_class_table(evaluator, path: str, record: Optional[RunRecord], done) -> None:
    """The evaluator's per-class CSV (class, IoU, ACC, pixels) at ``path``, preceded by ``#``
    lines stating the run (``pandas.read_csv(path, comment="#")`` reads it)."""
    temporary = f"{path}.rows.{os.getpid()}"
    try:
        evaluator.write_per_class_csv(temporary)
        with open(temporary, newline="") as f:
            rows = f.read()
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    header = "".join(f"# {line}\n" for line in record.lines(done)) if record else ""
    write_atomic(path, header + rows)


def write_vis_index(vis_dir: str, pictures, record: Optional[RunRecord], done) -> None:
    """OUT/vis/index.md: the run's record, then each benchmark's pictures."""
    lines = ["Comparison pictures (image | ground truth | prediction).", ""]
    lines += [f"- {line}" for line in (record.lines(done) if record else [])]
    for name, files in pictures.items():
        lines += ["", f"## {name}", ""] + [f"- [{f}]({quote(name)}/{quote(f)})" for f in files]
    os.makedirs(vis_dir, exist_ok=True)
    write_atomic(os.path.join(vis_dir, "index.md"), "\n".join(lines) + "\n")


def protocol_in_words(cfg) -> str:
    """The inference protocol a config ran with, in words (results.md states it)."""
    pooling = list(cfg.MODEL.SEM_SEG_HEAD.POOLING_SIZES)
    return ("sliding window" if cfg.TEST.SLIDING_WINDOW else "whole image") + f", pooling {pooling}"


def write_reports(results, output_dir, record: Optional[RunRecord] = None,
                  protocol: str = "sliding window, pooling [1, 1]"):
    """OUT/results.json and OUT/results.md, each stating ``record`` (the weights, the config,
    the dates, complete or not) and the inference ``protocol`` (:func:`protocol_in_words`).
    ``results[name]["sem_seg"]`` is the evaluator's dictionary; an optional
    ``results[name]["frozen_clip"]`` the frozen CLIP's zero-shot one."""
    os.makedirs(output_dir, exist_ok=True)
    stamped = _stamped(results, record)
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
    # Syn-gen / Syn-sel: seen and held-out names in one vocabulary (cat_seg/evaluation/generalized.py).
    generalized = format_generalized_table(results)
    if generalized:
        speed += ("\nGeneralized protocol: mIoU over the seen and over the held-out classes of one "
                  "vocabulary, their harmonic mean hIoU, and the share of held-out pixels "
                  "predicted as a seen class.\n\n" + generalized + "\n")
    provenance = "".join(f"- {line}\n" for line in record.lines(names)) + "\n" if record else ""
    write_atomic(os.path.join(output_dir, "results.json"), json.dumps(stamped, indent=2) + "\n")
    write_atomic(os.path.join(output_dir, "results.md"), provenance +
                 f"Results (%), test protocol: {protocol}. mIoU: detectron2 "
                 "0.6's formula (as published); mIoU_gt: mean over the classes present in the "
                 "ground truth; " + "; ".join(notes) + ".\n\n" + "\n".join(lines) + "\n" + speed)
    return "\n".join(lines) + ("\n\n" + generalized if generalized else "")


def run_record(args, names) -> RunRecord:
    """The :class:`RunRecord` of an evaluation: its weights' fingerprint, config, overrides and
    the benchmarks it will evaluate."""
    return RunRecord(weights=file_fingerprint(args.weights),
                     config_file=os.path.abspath(args.config_file), opts=list(args.opts),
                     planned=list(names))


def evaluate_benchmarks(args):
    """One process's evaluation. ``args``: ``config_file``, ``weights``, ``output``, ``opts``,
    ``benchmarks`` (comma-separated short names, "" = the config's), ``skip_missing``, ``vis``;
    ``run_record`` (optional): the :class:`RunRecord` fields :func:`launch_evaluation` prepared
    (weights fingerprint, start date), else they are computed here."""
    cfg = setup(argparse.Namespace(config_file=args.config_file, opts=TEST_PROTOCOL + args.opts
                                   + ["MODEL.WEIGHTS", args.weights, "OUTPUT_DIR", args.output],
                                   eval_only=True, resume=False))
    names = args.benchmarks.split(",") if args.benchmarks else list(cfg.TEST.BENCHMARKS)
    available, missing = check_benchmarks(names)
    for name, reason in missing.items():
        logger.warning(f"[eval] MISSING {name}: {reason}")
    if missing and not args.skip_missing:
        raise SystemExit(f"[eval] {len(missing)} benchmark(s) missing (see above); prepare them "
                         "or pass --skip-missing (SKIP_MISSING=1 for eval_ahs.sh)")
    if not available:
        raise SystemExit("[eval] no benchmark to evaluate")
    prepared = getattr(args, "run_record", None)
    record = RunRecord(**prepared) if prepared else run_record(args, available)
    record.planned = list(available)
    main = comm.is_main_process()
    if main:
        write_status(args.output, record, "running", done=[])

    model = Trainer.build_model(cfg)
    checkpointer = AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR,
                                      allow_unexpected=cfg.MODEL.ALLOW_UNEXPECTED_WEIGHTS)
    try:
        checkpointer.load(cfg.MODEL.WEIGHTS)
    except (CheckpointMismatchError, CheckpointReadError) as error:
        raise SystemExit(f"[eval] {error}")
    weights = weights_record(cfg.MODEL.WEIGHTS, checkpointer)
    weights.update(size=record.weights["size"], sha256=record.weights["sha256"])
    if checkpointer.ignored_keys:
        logger.warning(f"[eval] MODEL.ALLOW_UNEXPECTED_WEIGHTS: {weights['ignored_keys']} weights "
                       f"of {cfg.MODEL.WEIGHTS} ignored ({', '.join(weights['ignored_modules'])}); "
                       "results.json records it")
    model.eval()
    results, tables, pictures = {}, {}, {}
    vis_dir = os.path.join(args.output, "vis")
    for name, dataset in available.items():
        # The per-class CSV is written here (with the run's record), not by the evaluator.
        evaluators = [Trainer.build_evaluator(cfg, dataset, output_folder=None)]
        if args.vis:
            evaluators.append(VisualizationWriter(dataset, os.path.join(vis_dir, name), args.vis))
        loader = ProgressLoader(Trainer.build_test_loader(cfg, dataset), f"[eval] {name}")
        start = time.perf_counter()
        try:
            results[name] = inference_on_dataset(model, loader, DatasetEvaluators(evaluators))
        except DatasetInputError as error:
            raise SystemExit(f"[eval] {name}: {one_line(error)}") from None
        # All images of the benchmark (under DDP each process runs its share in parallel).
        speed = throughput(len(loader.loader.dataset), time.perf_counter() - start)
        if results[name] is not None:
            results[name]["weights"] = weights
            results[name]["throughput"] = speed
            logger.info(f"[eval] {name}: {speed['images']} images in {speed['seconds']:.1f} s "
                        f"({speed['images_per_s']:.2f} images/s)")
        if cfg.TEST.FROZEN_CLIP_REFERENCE and main:
            results[name]["frozen_clip"] = dense_zero_shot(model.backbone, dataset)
        if main:
            done = list(results)
            tables[name] = (evaluators[0], os.path.join(
                args.output, f"sem_seg_per_class_{dataset}.csv"))
            write_per_class_table(*tables[name], record, done)
            write_progress(results, args.output, record)
            if args.vis:
                pictures[name] = evaluators[1].pictures
                write_vis_index(vis_dir, pictures, record, done)
            write_status(args.output, record, "running", done=done)
    if main:
        done = list(results)
        # Every file restated as complete, then the final tables; the partial file goes last.
        for evaluator, path in tables.values():
            write_per_class_table(evaluator, path, record, done)
        if args.vis:
            write_vis_index(vis_dir, pictures, record, done)
        table = write_reports(results, args.output, record, protocol_in_words(cfg))
        os.remove(os.path.join(args.output, "results.partial.json"))
        write_status(args.output, record, "complete", done=done)
        logger.info(table)
        if missing:
            logger.info(f"[eval] skipped (missing): {', '.join(missing)}")
    return results


def check_before_evaluation(args) -> None:
    """Before any process starts or any model is built, and before the output folder's earlier
    results are moved: the weights file, the config (with the test protocol), the output folder
    and, unless ``skip_missing``, the benchmarks. Raises ``OSError`` / ``ValueError`` with one
    line (missing benchmarks are listed on stderr first)."""
    require_file(args.weights, "weights file", "train first (run_ahs.sh) or pass the path of a "
                 "checkpoint (OUTPUT_DIR/model_final.pth)")
    cfg = build_config_or_explain(args.config_file, TEST_PROTOCOL + args.opts)
    check_config_paths(cfg, weights=False)  # --weights replaces MODEL.WEIGHTS
    check_dataset_root()
    register_config_folder_datasets(cfg)  # a bad dataset description stops here, in one line
    check_output_dir(args.output, "output folder")
    if not args.skip_missing:
        names = args.benchmarks.split(",") if args.benchmarks else list(cfg.TEST.BENCHMARKS)
        _, missing = check_benchmarks(names)
        for name, reason in missing.items():
            logger.warning(f"[eval] MISSING {name}: {reason}")
        if missing:
            raise ValueError(f"{len(missing)} benchmark(s) missing (see above); prepare them or "
                             "pass --skip-missing (SKIP_MISSING=1 for eval_ahs.sh)")


def launch_evaluation(args):
    """:func:`check_before_evaluation` (a failure exits with one line ``[eval] message``); then,
    holding OUT/.lock, the previous results moved to OUT/previous/, and :func:`evaluate_benchmarks`
    in ``args.num_gpus`` processes per machine. Ctrl-C exits with one line (status 130)."""
    try:
        check_before_evaluation(args)
    except (OSError, ValueError) as error:
        raise SystemExit(f"[eval] {error}")
    if args.machine_rank != 0:  # the folder belongs to machine 0's processes
        launch(evaluate_benchmarks, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
        return
    try:
        with folder_lock(args.output, "evaluation"):
            _evaluate_in_locked_folder(args)
    except FolderInUseError as error:
        raise SystemExit(f"[eval] {error}")


def _evaluate_in_locked_folder(args):
    previous = read_status(args.output)
    moved = retire_previous_results(args.output)
    if moved:
        killed = previous is not None and previous.get("state") == "running"
        logger.warning(f"[eval] the results already in {args.output} were moved to {moved}"
                       + (f" (that run, process {previous.get('pid')}, never finished)"
                          if killed else ""))
    logger.info(f"[eval] fingerprinting {args.weights} (SHA-256) for the results' record")
    record = run_record(args, [])
    args.run_record = vars(record)
    write_status(args.output, record, "running", done=[])
    try:
        launch(evaluate_benchmarks, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
    except KeyboardInterrupt:
        status = read_status(args.output) or {}
        done = status.get("done", [])
        write_status(args.output, record, "interrupted", done=done)
        # The last line of a stopped evaluation (exit status 130), shown as it is.
        logger.error(f"[eval] interrupted (Ctrl-C) after {len(done)} benchmark(s) "
                     f"({', '.join(done) or 'none'}); {args.output} holds no results.json, only "
                     "what is marked INCOMPLETE; run the same command again to evaluate "
                     "everything")
        raise SystemExit(130) from None
    except BaseException:
        status = read_status(args.output) or {}
        write_status(args.output, record, "failed", done=status.get("done", []))
        raise
