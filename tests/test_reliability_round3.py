"""Issue 28, one test per class of input, iterating over the places it applies:

- results folders: every results file states its run; a new run moves the old results away; a
  folder in use is refused by every entry point; relative paths are the caller's in every script;
- ``--resume``: every kind of training setting that changed is refused (others are not), the
  override is recorded without rewriting anything, a finished run says so;
- errors whose message says what to do end in one line at every entry point (empty dataset
  folder, truncated checkpoint, label id out of range);
- config keys nothing reads are rejected.
(Ctrl-C and resume through train_net.py's real command line: tests/test_resume.py.)
"""
import argparse
import csv
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cat_seg import build_config
from cat_seg.utils.results_folder import (RunRecord, file_fingerprint, folder_lock,
                                          retire_previous_results, retire_previous_run,
                                          write_status)

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# ------------------------------------------------------------------ 1. one model's truth

class _Table:
    """Stands in for the evaluator: ``write_per_class_csv`` writes two rows."""

    def write_per_class_csv(self, path):
        with open(path, "w", newline="") as f:
            f.write("class,IoU,ACC,gt_pixels,pred_pixels\nsky,50.0000,60.0000,10,12\n")


def test_every_results_file_states_the_weights_config_dates_and_completeness(tmp_path):
    from cat_seg.engine.benchmarks import (write_per_class_table, write_progress, write_reports,
                                           write_vis_index)

    weights = tmp_path / "model_final.pth"
    weights.write_bytes(os.urandom(3000))
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    record = RunRecord(weights=file_fingerprint(str(weights)), config_file="/cfg/model.yaml",
                       opts=["MODEL.DEVICE", "cpu"], planned=["A", "B"])
    out = tmp_path / "out"
    out.mkdir()
    metrics = {"sem_seg": {"mIoU": 10.0, "mIoU_gt": 11.0, "chance_mIoU": 1.0}}

    def write_all(results):
        done = list(results)
        write_progress(results, str(out), record)
        write_per_class_table(_Table(), str(out / "sem_seg_per_class_a.csv"), record, done)
        write_vis_index(str(out / "vis"), {n: [f"{n}.png"] for n in done}, record, done)

    write_all({"A": dict(metrics)})
    partial = {"results.partial.json", "sem_seg_per_class_a.csv", "vis/index.md"}
    for name in partial:  # half-way: every file says so
        text = (out / name).read_text()
        assert sha in text and "/cfg/model.yaml" in text, name
        assert ("INCOMPLETE: 1 of 2" in text) or ('"complete": false' in text), name
    assert not (out / "results.json").exists()  # only a complete run writes it

    results = {"A": dict(metrics), "B": dict(metrics)}
    write_all(results)
    write_reports(results, str(out), record)
    (out / "results.partial.json").unlink()  # as evaluate_benchmarks does at the end
    for name in ("results.json", "results.md", "sem_seg_per_class_a.csv", "vis/index.md"):
        text = (out / name).read_text()
        assert sha in text and "/cfg/model.yaml" in text and str(weights) in text, name
        assert ("COMPLETE (2 of 2" in text) or ('"complete": true' in text), name
        assert "INCOMPLETE" not in text and '"complete": false' not in text, name
    stamped = json.loads((out / "results.json").read_text())
    assert list(stamped) == ["A", "B"]  # readers iterate over benchmarks (ablation_table.py)
    run = stamped["A"]["run"]
    assert run["weights"]["size"] == 3000 and run["started"] and run["written"]
    with open(out / "sem_seg_per_class_a.csv", newline="") as f:
        rows = list(csv.reader(line for line in f if not line.startswith("#")))
    assert rows == [["class", "IoU", "ACC", "gt_pixels", "pred_pixels"],
                    ["sky", "50.0000", "60.0000", "10", "12"]]
    assert not [p for p in out.rglob("*") if ".tmp." in p.name or ".rows." in p.name]


def test_a_new_run_moves_earlier_results_away_and_marks_a_killed_one(tmp_path):
    """Evaluations move earlier results; a training from scratch moves the earlier run."""
    out = tmp_path / "run"
    (out / "vis" / "A").mkdir(parents=True)
    results = ["results.json", "results.md", "results.partial.json", "config_eval.yaml",
               "sem_seg_per_class_voc.csv", "eval_results.json", "vis/A/img.png"]
    training = ["model_final.pth", "config.yaml", "log.txt", "metrics.json", "last_checkpoint"]
    for name in results + training:
        (out / name).write_text(name)
    write_status(str(out), None, "running")  # its run was killed: never marked complete

    moved = Path(retire_previous_results(str(out)))
    assert moved.parent == out / "previous" and moved.name.endswith("-incomplete")
    for name in results + ["run_status.json"]:
        assert not (out / name).exists() and (moved / name).read_text(), name
    for name in training:  # a training run's files are not results
        assert (out / name).read_text() == name
    assert retire_previous_results(str(out)) is None  # nothing left to move

    (out / "results.json").write_text("{}")
    write_status(str(out), None, "complete")
    again = Path(retire_previous_results(str(out)))
    assert not again.name.endswith("-incomplete") and again != moved

    # A training from scratch moves the earlier run's training files too; a user's own files
    # in the folder stay where they are.
    (out / "notes.txt").write_text("mine")
    (out / "results.md").write_text("old figures")
    started_over = Path(retire_previous_run(str(out)))
    for name in training + ["results.md"]:
        assert not (out / name).exists() and (started_over / name).exists(), name
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "previous"]


def _hold_lock(folder):
    """A separate process that holds ``folder``'s lock (results_folder.py alone: stdlib only)."""
    module = ROOT / "cat_seg" / "utils" / "results_folder.py"
    code = ("import importlib.util, sys, time\n"
            f"spec = importlib.util.spec_from_file_location('rf', {str(module)!r})\n"
            "rf = importlib.util.module_from_spec(spec); spec.loader.exec_module(rf)\n"
            "with rf.folder_lock(sys.argv[1], 'evaluation'):\n"
            "    print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([PYTHON, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_folder_in_use_is_refused_by_every_entry_point_until_its_holder_dies(
        tmp_path, tiny_config_file):
    from cat_seg.engine.benchmarks import launch_evaluation
    from cat_seg.engine.launch import default_argument_parser, launch_from_args

    out = tmp_path / "out"
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read: the lock is taken before any model is built")
    common = ["OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu"]
    entry_points = {
        "eval_ahs.sh": lambda: launch_evaluation(argparse.Namespace(
            config_file=tiny_config_file, weights=str(weights), output=str(out),
            opts=["MODEL.DEVICE", "cpu"], benchmarks="", skip_missing=True, vis=0, num_gpus=1,
            num_machines=1, machine_rank=0, dist_url="auto")),
        "train_net.py": lambda: launch_from_args(default_argument_parser().parse_args(
            ["--config-file", tiny_config_file, *common])),
        "train_net.py --eval-only": lambda: launch_from_args(default_argument_parser().parse_args(
            ["--config-file", tiny_config_file, "--eval-only", *common,
             "MODEL.WEIGHTS", str(weights)])),
    }
    holder = _hold_lock(out)
    try:
        for name, start in entry_points.items():
            with pytest.raises(SystemExit) as stopped:
                start()
            message = str(stopped.value.code)
            assert f"the output folder {out} is in use (evaluation by process {holder.pid}" \
                in message and "another folder" in message, (name, message)
            assert "\n" not in message, name
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(str(out)):  # the kernel dropped the dead holder's lock
        pass


def _run_script(args, cwd, **env):
    return subprocess.run(["bash", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def test_relative_paths_are_the_callers_in_every_script(tmp_path):
    caller = tmp_path / "caller"
    (caller / "mine").mkdir(parents=True)
    (caller / "mine" / "cfg.yaml").write_text("")
    # The function every script applies to the paths it is given, from the caller's folder.
    probe = _run_script(["-c", f"source {ROOT}/tools/user_paths.sh\n"
                         "ahs_user_path out/eval; ahs_user_path mine/cfg.yaml repo;"
                         "ahs_user_path configs/synthetic/quickstart.yaml repo;"
                         "ahs_user_path https://host/w.pth repo; ahs_user_path /abs/x;"
                         "ahs_user_opts OUTPUT_DIR o MODEL.WEIGHTS mine/cfg.yaml "
                         "MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS openai; printf '%s\\n' \"${AHS_OPTS[@]}\";"
                         "echo $DETECTRON2_DATASETS"], caller, DETECTRON2_DATASETS="data")
    assert probe.stdout.split("\n")[:-1] == [
        f"{caller}/out/eval", f"{caller}/mine/cfg.yaml", f"{ROOT}/configs/synthetic/quickstart.yaml",
        "https://host/w.pth", "/abs/x",
        "OUTPUT_DIR", f"{caller}/o", "MODEL.WEIGHTS", f"{caller}/mine/cfg.yaml",
        "MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS", "openai", f"{caller}/data"], probe.stderr

    # Each script, started from the caller's folder, names the caller's file in its message.
    cases = {
        "run_ahs.sh": (["run_ahs.sh", "missing.yaml"], {},
                       f"config file {caller}/missing.yaml does not exist"),
        "run_ahs_ablations.sh": (["run_ahs_ablations.sh", "1", "out"], {"CONFIG_DIR": "cfgs"},
                                 f"config file {caller}/cfgs/vitb_384_ahs_baseline.yaml does not"),
        "eval_ahs.sh": (["eval_ahs.sh", "configs/synthetic/quickstart.yaml", "w.pth", "res"], {},
                        f"[eval] weights file {caller}/w.pth does not exist"),
    }
    for name, (args, env, expected) in cases.items():
        result = _run_script([str(ROOT / args[0]), *args[1:]], caller, **env)
        assert result.returncode != 0 and expected in result.stderr, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, name
    # eval_ahs.sh found the shipped config from elsewhere and writes where the user asked.
    assert f"--config-file {ROOT}/configs/synthetic/quickstart.yaml" in result.stdout
    assert f"--output {caller}/res" in result.stdout


def test_folder_dataset_overrides_are_the_callers_paths(tmp_path):
    """DATASETS.FOLDER_DATASETS given to a script as an override (a list literal) names the
    caller's files too: each quoted path resolved like a config file (the caller's, else the
    repository's), the literal still one the config loader reads."""
    caller = tmp_path / "caller"
    (caller / "mine").mkdir(parents=True)
    (caller / "mine" / "data.yaml").write_text("")
    example = "configs/datasets/example_folder_dataset.yaml"
    cases = {
        f"['mine/data.yaml', \"{example}\", '/abs/x.yaml']":
            f"['{caller}/mine/data.yaml', '{ROOT}/{example}', '/abs/x.yaml']",
        " ( 'absent.yaml' , ) ": f"('{caller}/absent.yaml',)",
        "['~/d.yaml']": f"['{os.path.expanduser('~')}/d.yaml']",
        "[]": "[]",
        "mine/data.yaml": "mine/data.yaml",  # no list literal: as typed, for the loader to refuse
        "[mine/data.yaml]": "[mine/data.yaml]",
    }
    script = f"source {ROOT}/tools/user_paths.sh\n" + "".join(
        f"ahs_user_opts DATASETS.FOLDER_DATASETS {shlex.quote(typed)}; "
        "printf '%s\\n' \"${AHS_OPTS[1]}\"\n" for typed in cases)
    probe = _run_script(["-c", script], caller)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split("\n")[:-1] == list(cases.values()), probe.stderr
    # What the scripts pass on is a literal the config reads as the list of those files.
    resolved = list(cases.values())[0]
    cfg = build_config(str(ROOT / "configs/synthetic/quickstart.yaml"),
                       ["DATASETS.FOLDER_DATASETS", resolved])
    assert list(cfg.DATASETS.FOLDER_DATASETS) == [
        f"{caller}/mine/data.yaml", f"{ROOT}/{example}", "/abs/x.yaml"]


# ------------------------------------------------------------------ 2. resume refuses changes

def _saved_run(folder, config_file, opts, iteration=4):
    """A run folder as train_net.py leaves it: config.yaml and a tagged checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(build_config(config_file, opts).dump())
    torch.save({"model": {}, "iteration": iteration}, folder / f"model_{iteration:07d}.pth")
    (folder / "last_checkpoint").write_text(f"model_{iteration:07d}.pth")


def test_resume_refuses_every_kind_of_training_change_and_records_an_allowed_one(
        tmp_path, tiny_config_file):
    from cat_seg.engine.resume_guard import (CONFIG_HISTORY_NAME, ConfigChangedError,
                                             check_resume, record_config_change,
                                             training_config_preserved)

    out = tmp_path / "run"
    base = ["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "10"]
    _saved_run(out, tiny_config_file, base)
    saved_text = (out / "config.yaml").read_text()
    changed = {  # batch size, schedule, optimizer, data, augmentation, model, AHS module, seed
        "SOLVER.IMS_PER_BATCH": ("1", "8"), "SOLVER.MAX_ITER": ("10", "20"),
        "SOLVER.BASE_LR": ("0.0001", "0.5"),
        "DATASETS.TRAIN": ("['synthetic_seen_train']", "['synthetic_unseen_val']"),
        "INPUT.CROP.ENABLED": ("False", "True"), "MODEL.SEM_SEG_HEAD.HIDDEN_DIMS": ("32", "64"),
        "MODEL.SEM_SEG_HEAD.USE_PROTOTYPE_ALIGNMENT": ("False", "True"), "SEED": ("-1", "3"),
    }
    for key, (before, after) in changed.items():
        cfg = build_config(tiny_config_file, base + [key, after])
        with pytest.raises(ConfigChangedError) as refused:
            check_resume(cfg, allow_change=False)
        message = str(refused.value)
        assert f"{key}: saved " in message and "--allow-config-change" in message, key
        assert "1 training setting(s) changed" in message, key
    # Where and how fast it runs, and the test protocol, may change.
    for key, value in {"SOLVER.CHECKPOINT_PERIOD": "7", "DATALOADER.NUM_WORKERS": "0",
                       "MODEL.SEM_SEG_HEAD.ACTIVATION_CHECKPOINTING": "selective",
                       "TEST.SLIDING_WINDOW": "True", "DATASETS.TEST": "()"}.items():
        assert check_resume(build_config(tiny_config_file, base + [key, value]), False) == \
            (None, []), key

    # Allowed on purpose: recorded, config.yaml untouched; later resumes compare with the record.
    bigger = build_config(tiny_config_file, base + ["SOLVER.IMS_PER_BATCH", "8"])
    _, differences = check_resume(bigger, allow_change=True)
    assert differences == [("SOLVER.IMS_PER_BATCH", 1, 8)]
    record_config_change(str(out), differences)
    with training_config_preserved(str(out), enabled=True):
        (out / "config.yaml").write_text("rewritten by default_setup")
    assert (out / "config.yaml").read_text() == saved_text
    assert check_resume(bigger, allow_change=False) == (None, [])
    with pytest.raises(ConfigChangedError, match="SOLVER.IMS_PER_BATCH: saved 8, now 1"):
        check_resume(build_config(tiny_config_file, base), allow_change=False)
    longer = build_config(tiny_config_file, base + ["SOLVER.IMS_PER_BATCH", "8",
                                                    "SOLVER.MAX_ITER", "30"])
    record_config_change(str(out), check_resume(longer, allow_change=True)[1])
    history = yaml.safe_load((out / CONFIG_HISTORY_NAME).read_text())
    assert [list(e["changes"]) for e in history] == [["SOLVER.IMS_PER_BATCH"], ["SOLVER.MAX_ITER"]]
    assert history[0]["changes"]["SOLVER.IMS_PER_BATCH"] == {"saved": 1, "now": 8}
    assert all(e["date"] and e["resumed_from"] == "model_0000004.pth" for e in history)

    # A finished run: its last checkpoint is the final iteration.
    done = tmp_path / "done"
    _saved_run(done, tiny_config_file, ["OUTPUT_DIR", str(done), "SOLVER.MAX_ITER", "10"],
               iteration=9)
    finished, _ = check_resume(build_config(tiny_config_file, ["OUTPUT_DIR", str(done),
                                                               "SOLVER.MAX_ITER", "10"]), False)
    assert finished is not None and "is finished" in finished.message() \
        and "iteration 10 of SOLVER.MAX_ITER 10" in finished.message()


# ------------------------------------------------------------------ 6. one line, no traceback

def _label_dataset(folder, bad_value=None):
    """Two 64x80 images with 3-class labels; ``bad_value`` written into the first label."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        label = rng.integers(0, 3, (4, 5)).repeat(16, 0).repeat(16, 1).astype(np.uint8)
        if bad_value is not None and i == 0:
            label[0, 0] = bad_value
        image = (60 * label[..., None] + rng.integers(0, 60, (64, 80, 3))).astype(np.uint8)
        Image.fromarray(image).save(folder / f"image{i}.png")
        Image.fromarray(label).save(folder / f"label{i}.png")
    return [dict(file_name=str(folder / f"image{i}.png"),
                 sem_seg_file_name=str(folder / f"label{i}.png"), height=64, width=80)
            for i in range(2)]


def test_stated_errors_end_in_one_line_at_every_entry_point(tmp_path, tiny_config_file,
                                                            write_prepared_benchmarks):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.modeling import build_model

    from cat_seg.data.benchmarks import register_all_benchmarks
    from cat_seg.engine import AtomicCheckpointer
    from cat_seg.engine.benchmarks import launch_evaluation
    from cat_seg.engine.launch import default_argument_parser, launch_from_args

    name = "round3_bad_labels"
    if name not in DatasetCatalog.list():
        records = _label_dataset(tmp_path / "bad", bad_value=7)
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).set(stuff_classes=["sky", "grass", "water"], ignore_label=255,
                                      evaluator_type="sem_seg")
    empty = tmp_path / "empty"
    (empty / "coco-stuff" / "annotations_detectron2" / "train2017").mkdir(parents=True)
    data = tmp_path / "benchmarks"
    write_prepared_benchmarks(data, num_images=1, size=(24, 32),
                              dataset_names=["voc_2012_test_sem_seg"])
    broken = tmp_path / "broken"
    write_prepared_benchmarks(broken, num_images=1, size=(24, 32),
                              dataset_names=["voc_2012_test_sem_seg"])
    for label in (broken / "VOCdevkit").rglob("annotations_detectron2/*/*.png"):
        Image.fromarray(np.full((24, 32), 77, np.uint8)).save(label)
    weights = tmp_path / "tiny.pth"
    cfg = build_config(tiny_config_file, ["MODEL.DEVICE", "cpu"])
    AtomicCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("tiny")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(weights.read_bytes()[:5000])

    def train(out, *opts, flags=()):
        return lambda: launch_from_args(default_argument_parser().parse_args(
            ["--config-file", tiny_config_file, *flags, "OUTPUT_DIR", str(tmp_path / out),
             "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_ITER", "2",
             "DATASETS.TEST", "()", *opts]))

    def evaluate(out, weights_file):
        return lambda: launch_evaluation(argparse.Namespace(
            config_file=tiny_config_file, weights=str(weights_file), output=str(tmp_path / out),
            opts=["MODEL.DEVICE", "cpu"], benchmarks="PAS-20", skip_missing=False, vis=0,
            num_gpus=1, num_machines=1, machine_rank=0, dist_url="auto"))

    cases = {  # (datasets root, entry point, expected start of the line, words it must hold)
        "empty dataset folder, training": (
            empty, train("t1", "DATASETS.TRAIN", "('coco_2017_train_stuff_all_sem_seg',)"),
            "[train_net] dataset 'coco_2017_train_stuff_all_sem_seg'", "has no *.png"),
        "label id out of range, training": (
            data, train("t2", "DATASETS.TRAIN", f"('{name}',)"),
            "[train_net] label file", "holds values [7] outside the training classes"),
        "label id out of range, evaluation": (
            broken, evaluate("e1", weights), "[eval] PAS-20: label file", "holds values [77]"),
        "truncated checkpoint, eval_ahs.sh": (
            data, evaluate("e2", truncated), f"[eval] checkpoint {truncated} could not be read",
            "truncated or corrupt"),
        "truncated checkpoint, train_net.py --eval-only": (
            data, train("e3", "MODEL.WEIGHTS", str(truncated), flags=["--eval-only"]),
            f"[train_net] checkpoint {truncated} could not be read", "truncated or corrupt"),
    }
    try:
        for case, (root, start, prefix, words) in cases.items():
            register_all_benchmarks(str(root))
            with pytest.raises(SystemExit) as stopped:
                start()
            message = str(stopped.value.code)
            assert message.startswith(prefix) and words in message, (case, message)
            assert "\n" not in message and "Traceback" not in message, case
    finally:
        register_all_benchmarks()  # back to the default root for other tests


# ------------------------------------------------------------------ 7. no key without an effect

def test_config_keys_nothing_reads_are_rejected_with_the_key_that_does_the_job(tiny_config_file):
    unread = {
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES": ("-3", "the dataset's class names"),
        "MODEL.PIXEL_MEAN": ("[1.0, 2.0, 3.0]", "CLIP's own normalisation"),
        "MODEL.RESNETS.DEPTH": ("101", "MODEL.SEM_SEG_HEAD.CLIP_PRETRAINED"),
        "MODEL.ROI_HEADS.NUM_CLASSES": ("3", "never reads"),
        "INPUT.RANDOM_FLIP": ("'none'", "always flips horizontally"),
        "SOLVER.NESTEROV": ("True", "SOLVER.MOMENTUM"),
        "SOLVER.WEIGHT_DECAY_BIAS": ("0.1", "SOLVER.WEIGHT_DECAY_EMBED"),
        "DATALOADER.SAMPLER_TRAIN": ("'RepeatFactorTrainingSampler'", "DATALOADER.NUM_WORKERS"),
        "TEST.AUG.ENABLED": ("True", "TEST.SLIDING_WINDOW"),
        "TEST.PRECISE_BN.ENABLED": ("True", "no BatchNorm"),
    }
    for key, (value, hint) in unread.items():
        with pytest.raises(ValueError) as rejected:
            build_config(tiny_config_file, [key, value])
        message = str(rejected.value)
        assert message.startswith(f"{key}=") and "has no effect" in message and hint in message, key
    # Keys that are read, set away from their defaults, are accepted; so is every shipped config.
    build_config(tiny_config_file, ["SOLVER.MOMENTUM", "0.5", "SOLVER.WARMUP_ITERS", "3",
                                    "INPUT.CROP.ENABLED", "True", "SOLVER.STEPS", "(5,)"])
    for config in sorted((ROOT / "configs").rglob("*.yaml")):
        if "_BASE_" in config.read_text() or config.name.startswith("Base"):
            build_config(str(config), ["MODEL.DEVICE", "cpu"])


def test_every_key_ahs_seg_defines_is_read_somewhere():
    """The other half of the audit: a key cat_seg/config.py (or a module's add_config) defines
    is named by code outside the config files, other than where it is given its default
    (detectron2 reads MODEL.META_ARCHITECTURE)."""
    from detectron2.config import get_cfg

    from cat_seg.config import add_ahs_config
    from cat_seg.config_checks import _flat, _same

    detectron2_defaults = _flat(get_cfg())
    ours = get_cfg()
    add_ahs_config(ours)
    lines = [line for p in (ROOT / "cat_seg").rglob("*.py")
             if p.name not in ("config.py", "config_checks.py")
             for line in p.read_text().splitlines() if not line.lstrip().startswith("#")]
    unread = []
    for key, value in _flat(ours).items():
        if key in detectron2_defaults and _same(value, detectron2_defaults[key]):
            continue
        leaf = key.split(".")[-1]
        defines = re.compile(rf"\.{leaf}\s*=(?!=)")
        readers = [line for line in lines if re.search(rf"\b{leaf}\b", line)
                   and not defines.search(line)]
        if key != "MODEL.META_ARCHITECTURE" and not readers:
            unread.append(key)
    assert not unread, f"defined but never read: {unread}"

