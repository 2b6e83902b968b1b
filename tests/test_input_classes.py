"""Issue 28 (5): whole classes of input, one test per class, iterating over every place it applies.

(a) Paths of the wrong kind (absent, a folder where a file belongs, a file where a folder
    belongs, a folder to create under a file) at every path a user can give: each argument of
    every ``ahs-seg`` subcommand (the demo, web demo, eval, convert, analyze, check-data and
    prepare scripts are those subcommands), the config keys that name files, the keys of a
    dataset description and the environment variables. The inventory is read from the argument
    parsers, the config and the sources, so a new path argument without a place here fails.
    Each case runs the command in this process (``cat_seg.cli.main``) with the model-building
    and launching functions replaced by a tripwire: it must stop before any work with one line
    that names the path, what it is instead of what was expected, and the fix, and a non-zero
    exit status, never a traceback.
(b) Output file names made from user input (image file names in the demo's output folder and in
    eval's ``vis/``, class names in probability maps and the per-class CSV): long, awkward and
    colliding names give valid, distinct files.
(c) Every shipped class-name file in every tool the docs say takes one.

(Single cases of bad input: tests/test_bad_input.py, tests/test_reliability_round3.py.)
"""
import argparse
import ast
import csv
import importlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
from PIL import Image

from cat_seg.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]

# ================================================================================ (a) paths

IN_FILE, IN_FOLDER, IN_ANY = "file to read", "folder to read", "file, folder or pattern to read"
OUT_FILE, OUT_FOLDER = "file to write", "folder to write into (made when absent)"
# The wrong kinds of each kind of path, and what the message must say about each.
WRONG = {IN_FILE: ("absent", "a folder"), IN_FOLDER: ("absent", "a file"), IN_ANY: ("absent",),
         OUT_FILE: ("a folder", "under a file"), OUT_FOLDER: ("a file", "under a file")}
STATES = {"absent": "does not exist", "a folder": "is a folder, not a file",
          "a file": "is a file, not a folder", "under a file": "is a file, not a folder"}
# A fix is an instruction: one of these words follows the problem.
FIX_WORDS = re.compile(r"\b(give|pass|choose|set|train|unpack|remove|make|create)\b")


class WorkStarted(BaseException):
    """Raised by the tripwires: the command passed its checks and started working."""


@dataclass
class Context:
    """Good inputs of every kind, in ``folder``."""

    folder: Path
    config: str
    weights: str
    image: str
    vocabulary: str
    description: str

    def out(self, name="out") -> str:
        return str(self.folder / name)


@dataclass(frozen=True)
class Place:
    """Where a user gives a path: ``command`` (an ahs-seg subcommand, ``prepare DATASET`` for
    the prepare scripts), ``dest`` (the argparse destination, config key, description key or
    ``$VARIABLE``), its ``kind``, a good value and the arguments and environment with ``path``
    there. ``report``: the command reports every problem (check-data, eval's missing
    benchmarks) instead of stopping at the first; the line about the path is one of several."""

    command: str
    dest: str
    kind: str
    good: Callable[[Context], str]
    build: Callable[[Context, str], Tuple[List[str], Dict[str, str]]]
    label: str = ""
    report: bool = False

    @property
    def id(self) -> str:
        return f"{self.command} {self.label or self.dest}"


def _argv(*args, **env):
    return list(args), env


def _cfg(c: Context) -> str:
    return c.config


def _weights(c: Context) -> str:
    return c.weights


def _out(c: Context) -> str:
    return c.out()


DEVICE = ["MODEL.DEVICE", "cpu"]


def _train(c: Context, *opts, config=None, **env):
    return _argv("train", "--config-file", config or c.config, "OUTPUT_DIR", c.out(), *DEVICE,
                 *opts, **env)


def _eval(c: Context, *opts, config=None, weights=None, output=None, **env):
    return _argv("eval", "--config-file", config or c.config, "--weights", weights or c.weights,
                 "--output", output or c.out(), "--skip-missing", *DEVICE, *opts, **env)


def _demo(c: Context, *extra, inputs=None, vocabulary=None, config=None, weights=None,
          output=None, opts=(), **env):
    vocabulary_args = ["--vocabulary-file", vocabulary] if vocabulary else ["--vocabulary",
                                                                           "sky, grass"]
    weights_args = [] if weights == "" else ["--weights", weights or c.weights]
    return _argv("demo", inputs or c.image, *vocabulary_args, "--config-file", config or c.config,
                 *weights_args, "--output", output or c.out(), "--device", "cpu", *extra,
                 "--opts", *opts, **env)


def _web(c: Context, config=None, weights=None, examples=None, opts=(), **env):
    return _argv("web", "--config-file", config or c.config, "--weights", weights or c.weights,
                 "--examples-dir", examples or c.out("examples"), "--device", "cpu", "--opts",
                 *opts, **env)


def _convert(c: Context, source=None, output=None, config=None, **env):
    return _argv("convert", source or c.weights, output or c.out("converted.pth"),
                 "--config-file", config or c.config, "--no-progress", **env)


def _analyze(c: Context, *extra, config=None, opts=()):
    return _argv("analyze", "--config-file", config or c.config, *extra, "--opts", *DEVICE, *opts)


def _check_data(c: Context, description=None):
    return _argv("check-data", description or c.description)


def _prepare(dataset, *extra, root=None, **env):
    return lambda c, path=None: _argv("prepare", dataset, "--root", root or (path or c.out()),
                                      "--workers", "1", *extra, **env)


def _description(c: Context, key: str, path: str) -> str:
    """A copy of the good description whose ``key`` is ``path`` (its own dataset name)."""
    text = Path(c.description).read_text()
    name = "d" + str(abs(hash((key, path))))
    text = text.replace("name: good", f"name: {name}")
    text = re.sub(rf"^{key}: .*$", f"{key}: {path}", text, flags=re.M)
    described = c.folder / f"{name}.yaml"
    described.write_text(text)
    return str(described)


def _description_key(key):
    """Train, eval and check-data with a description whose ``key`` is the path."""
    def train(c, path):
        description = _description(c, key, path)
        name = Path(description).stem
        return _train(c, "DATASETS.FOLDER_DATASETS", f"['{description}']", "DATASETS.TRAIN",
                      f"('{name}',)", "DATASETS.TEST", "()")

    def evaluate(c, path):  # without --skip-missing: the benchmark is checked
        description = _description(c, key, path)
        argv = ["eval", "--config-file", c.config, "--weights", c.weights, "--output", c.out(),
                "--benchmarks", Path(description).stem, *DEVICE, "DATASETS.FOLDER_DATASETS",
                f"['{description}']"]
        return argv, {}

    return train, evaluate, (lambda c, path: _check_data(c, _description(c, key, path)))


CLIP_WEIGHTS = "MODEL.SEM_SEG_HEAD.CLIP_WEIGHTS"
URL = "https://example.invalid/weights/model.pth"  # never reached: the cache is checked first

_image_dir = _description_key("image_dir")
_label_dir = _description_key("label_dir")
_classes = _description_key("classes")


def _good_folder(name):
    return lambda c: str(c.folder / name)


PLACES = [
    # --------------------------------------------------------------------------- train
    Place("train", "config_file", IN_FILE, _cfg, lambda c, p: _train(c, config=p)),
    Place("train", "OUTPUT_DIR", OUT_FOLDER, _out,
          lambda c, p: _argv("train", "--config-file", c.config, *DEVICE, "OUTPUT_DIR", p)),
    Place("train", "MODEL.WEIGHTS", IN_FILE, _weights, lambda c, p: _train(c, "MODEL.WEIGHTS", p)),
    Place("train", CLIP_WEIGHTS, IN_FILE, lambda c: "random",
          lambda c, p: _train(c, CLIP_WEIGHTS, p)),
    Place("train", "DATASETS.FOLDER_DATASETS", IN_FILE, lambda c: c.description,
          lambda c, p: _train(c, "DATASETS.FOLDER_DATASETS", f"['{p}']")),
    Place("train", "image_dir", IN_FOLDER, _good_folder("images"), _image_dir[0],
          label="description image_dir"),
    Place("train", "label_dir", IN_FOLDER, _good_folder("labels"), _label_dir[0],
          label="description label_dir"),
    Place("train", "classes", IN_FILE, _good_folder("classes.txt"), _classes[0],
          label="description classes"),
    Place("train", "$DETECTRON2_DATASETS", OUT_FOLDER, _good_folder("datasets"),
          lambda c, p: _train(c, DETECTRON2_DATASETS=p)),
    # --------------------------------------------------------------------------- eval
    Place("eval", "config_file", IN_FILE, _cfg, lambda c, p: _eval(c, config=p)),
    Place("eval", "weights", IN_FILE, _weights, lambda c, p: _eval(c, weights=p)),
    Place("eval", "output", OUT_FOLDER, _out, lambda c, p: _eval(c, output=p)),
    Place("eval", CLIP_WEIGHTS, IN_FILE, lambda c: "random",
          lambda c, p: _eval(c, CLIP_WEIGHTS, p)),
    Place("eval", "DATASETS.FOLDER_DATASETS", IN_FILE, lambda c: c.description,
          lambda c, p: _eval(c, "DATASETS.FOLDER_DATASETS", f"['{p}']")),
    Place("eval", "image_dir", IN_FOLDER, _good_folder("images"), _image_dir[1],
          label="description image_dir", report=True),
    Place("eval", "label_dir", IN_FOLDER, _good_folder("labels"), _label_dir[1],
          label="description label_dir", report=True),
    Place("eval", "classes", IN_FILE, _good_folder("classes.txt"), _classes[1],
          label="description classes"),
    Place("eval", "$DETECTRON2_DATASETS", OUT_FOLDER, _good_folder("datasets"),
          lambda c, p: _eval(c, DETECTRON2_DATASETS=p)),
    Place("eval", "$AHS_SEG_CACHE", OUT_FOLDER, _good_folder("cache"),
          lambda c, p: _eval(c, weights=URL, AHS_SEG_CACHE=p)),
    # --------------------------------------------------------------------------- demo
    Place("demo", "inputs", IN_ANY, lambda c: c.image, lambda c, p: _demo(c, inputs=p)),
    Place("demo", "vocabulary_file", IN_FILE, lambda c: c.vocabulary,
          lambda c, p: _demo(c, vocabulary=p)),
    Place("demo", "config_file", IN_FILE, _cfg, lambda c, p: _demo(c, config=p)),
    Place("demo", "weights", IN_FILE, _weights, lambda c, p: _demo(c, weights=p)),
    Place("demo", "output", OUT_FOLDER, _out, lambda c, p: _demo(c, output=p)),
    Place("demo", "MODEL.WEIGHTS", IN_FILE, _weights,
          lambda c, p: _demo(c, weights="", opts=["MODEL.WEIGHTS", p])),
    Place("demo", CLIP_WEIGHTS, IN_FILE, lambda c: "random",
          lambda c, p: _demo(c, opts=[CLIP_WEIGHTS, p])),
    Place("demo", "$AHS_SEG_CACHE", OUT_FOLDER, _good_folder("cache"),
          lambda c, p: _demo(c, weights=URL, AHS_SEG_CACHE=p)),
    Place("demo", "$XDG_CACHE_HOME", OUT_FOLDER, _good_folder("xdg"),
          lambda c, p: _demo(c, weights=URL, XDG_CACHE_HOME=p, AHS_SEG_CACHE="")),
    # --------------------------------------------------------------------------- web
    Place("web", "config_file", IN_FILE, _cfg, lambda c, p: _web(c, config=p)),
    Place("web", "weights", IN_FILE, _weights, lambda c, p: _web(c, weights=p)),
    Place("web", "examples_dir", OUT_FOLDER, _good_folder("examples"),
          lambda c, p: _web(c, examples=p)),
    Place("web", CLIP_WEIGHTS, IN_FILE, lambda c: "random",
          lambda c, p: _web(c, opts=[CLIP_WEIGHTS, p])),
    Place("web", "$AHS_SEG_CACHE", OUT_FOLDER, _good_folder("cache"),
          lambda c, p: _web(c, weights=URL, AHS_SEG_CACHE=p)),
    # --------------------------------------------------------------------------- convert
    Place("convert", "paths", IN_FILE, _weights, lambda c, p: _convert(c, source=p),
          label="SOURCE"),
    Place("convert", "paths", OUT_FILE, lambda c: c.out("converted.pth"),
          lambda c, p: _convert(c, output=p), label="OUTPUT"),
    Place("convert", "config_file", IN_FILE, _cfg, lambda c, p: _convert(c, config=p)),
    Place("convert", "$AHS_SEG_CACHE", OUT_FOLDER, _good_folder("cache"),
          lambda c, p: _convert(c, source=URL, AHS_SEG_CACHE=p)),
    # --------------------------------------------------------------------------- analyze
    Place("analyze", "config_file", IN_FILE, _cfg, lambda c, p: _analyze(c, config=p)),
    Place("analyze", "compare", IN_FILE, _cfg, lambda c, p: _analyze(c, "--compare", p)),
    Place("analyze", "json", OUT_FILE, lambda c: c.out("a.json"),
          lambda c, p: _analyze(c, "--json", p)),
    Place("analyze", "markdown", OUT_FILE, lambda c: c.out("a.md"),
          lambda c, p: _analyze(c, "--markdown", p)),
    Place("analyze", CLIP_WEIGHTS, IN_FILE, lambda c: "random",
          lambda c, p: _analyze(c, "--keep-clip-weights", opts=[CLIP_WEIGHTS, p])),
    # --------------------------------------------------------------------------- check-data
    Place("check-data", "descriptions", IN_FILE, lambda c: c.description,
          lambda c, p: _check_data(c, p)),
    Place("check-data", "config_file", IN_FILE, _cfg,
          lambda c, p: _argv("check-data", "--config-file", p)),
    Place("check-data", "image_dir", IN_FOLDER, _good_folder("images"), _image_dir[2],
          label="description image_dir", report=True),
    Place("check-data", "label_dir", IN_FOLDER, _good_folder("labels"), _label_dir[2],
          label="description label_dir", report=True),
    Place("check-data", "classes", IN_FILE, _good_folder("classes.txt"), _classes[2],
          label="description classes", report=True),
]
# ----------------------------------------------------------------------------- prepare DATASET
for _dataset in ("ade20k-150", "ade20k-847", "coco-stuff", "pascal-context", "voc"):
    PLACES += [
        Place(f"prepare {_dataset}", "root", IN_FOLDER, _good_folder("datasets"),
              lambda c, p, d=_dataset: _argv("prepare", d, "--root", p, "--workers", "1")),
        Place(f"prepare {_dataset}", "$DETECTRON2_DATASETS", IN_FOLDER, _good_folder("datasets"),
              lambda c, p, d=_dataset: _argv("prepare", d, "--workers", "1",
                                             DETECTRON2_DATASETS=p)),
    ]
PLACES.append(Place("prepare pascal-context", "split_file", IN_FILE, _good_folder("ids.txt"),
                    lambda c, p: _argv("prepare", "pascal-context", "--root", c.out(),
                                       "--split-file", p)))

# Every other argument, config key and variable, and why it is not a path.
NOT_PATHS = {
    "train": {"resume": "flag", "eval_only": "flag", "num_gpus": "number",
              "num_machines": "number", "machine_rank": "number", "dist_url": "URL",
              "allow_config_change": "flag",
              "opts": "KEY VALUE overrides: the keys that name paths are places of their own"},
    "eval": {"benchmarks": "names", "skip_missing": "flag", "vis": "number",
             "num_gpus": "number", "num_machines": "number", "machine_rank": "number",
             "dist_url": "URL", "opts": "KEY VALUE overrides (their path keys are places)"},
    "demo": {"vocabulary": "class names", "probabilities": "flag", "device": "name",
             "mode": "choice", "min_score": "number", "max_side": "number", "alpha": "number",
             "allow_unexpected_weights": "flag", "opts": "overrides (path keys are places)"},
    "web": {"port": "number", "host": "address", "device": "name", "max_side": "number",
            "min_score": "number", "opts": "overrides (path keys are places)"},
    "convert": {"hf_repo": "Hugging Face name", "hf_file": "name in the repository",
                "hf_revision": "name", "sha256": "checksum", "no_progress": "flag"},
    "prepare": {"dataset": "choice", "args": "the dataset script's arguments (prepare DATASET)"},
    "analyze": {"labels": "names", "image_size": "number", "num_classes": "number",
                "warmup": "number", "iters": "number", "train_warmup": "number",
                "train_iters": "number", "batch_size": "number", "no_flops": "flag",
                "profile": "number", "no_inference": "flag", "no_train": "flag",
                "device": "name", "keep_clip_weights": "flag",
                "opts": "overrides (path keys are places)"},
    "check-data": {"max_problems": "number", "workers": "number"},
}
for _dataset in ("ade20k-150", "ade20k-847", "coco-stuff", "pascal-context", "voc"):
    NOT_PATHS[f"prepare {_dataset}"] = {"workers": "number", "overwrite": "flag",
                                        "expect": "KEY=N counts"}
NOT_PATHS["prepare coco-stuff"]["splits"] = "choice"
# Config keys whose names or values make them look like paths, and are not.
CONFIG_NOT_PATHS = {
    "DATASETS.PROPOSAL_FILES_TRAIN": "detectron2's, nothing reads it (rejected when set)",
    "DATASETS.PROPOSAL_FILES_TEST": "detectron2's, nothing reads it (rejected when set)",
}
ENV_NOT_PATHS = {
    "AHS_MALLOC": "an allocator choice (reuse / system)",
    "PYTHONPATH": "handed on to a child process unchanged (the soak test)",
    "AHS_SEG_CONSOLE": "a switch an entry point sets for its worker processes",
}


def _parsers() -> Dict[str, argparse.ArgumentParser]:
    """The argument parser of every subcommand and prepare script, caught as it parses."""
    class Caught(Exception):
        pass

    found = {}

    def catch(name, call):
        original = argparse.ArgumentParser.parse_args

        def parse_args(self, args=None, namespace=None):
            found[name] = self
            raise Caught

        argparse.ArgumentParser.parse_args = parse_args
        try:
            call()
        except Caught:
            pass
        finally:
            argparse.ArgumentParser.parse_args = original

    for name in cli.SUBCOMMANDS:
        module = cli.load_subcommand(name)
        catch(name, lambda: module.main([]))
    from cat_seg.cli.prepare import DATASETS

    for dataset, script in DATASETS.items():
        module = importlib.import_module(script)
        catch(f"prepare {dataset}", lambda: module.main([]))
    return found


def test_every_argument_of_every_command_is_a_tested_path_or_not_a_path():
    places = {}
    for place in PLACES:
        places.setdefault(place.command, set()).add(place.dest)
    for command, parser in _parsers().items():
        dests = {a.dest for a in parser._actions if a.dest != "help"}
        unclassified = dests - places.get(command, set()) - set(NOT_PATHS[command])
        assert not unclassified, (f"{command}: arguments neither tested as paths here nor "
                                  f"listed in NOT_PATHS: {sorted(unclassified)}")
        stale = set(NOT_PATHS[command]) - dests
        assert not stale, f"{command}: NOT_PATHS names arguments that are gone: {stale}"


def test_every_config_key_that_names_a_path_is_tested():
    from detectron2.config import get_cfg

    from cat_seg.config import add_ahs_config
    from cat_seg.config_checks import _flat

    cfg = get_cfg()
    add_ahs_config(cfg)
    looks_like_a_path = re.compile(r"(WEIGHTS|_DIR|FILES?(_\w+)?|DATASETS|ROOT|PATH|JSON)$")
    keys = {key for key, value in _flat(cfg).items() if looks_like_a_path.search(key)
            and (isinstance(value, str) or (isinstance(value, (list, tuple))
                                            and all(isinstance(v, str) for v in value)))}
    tested = {place.dest for place in PLACES if place.dest.isupper() or "." in place.dest}
    assert keys - set(CONFIG_NOT_PATHS) == {k for k in tested if not k.startswith("$")}, \
        "a config key that names a path has no place in PLACES (or CONFIG_NOT_PATHS)"


def _environment_variables() -> Dict[str, str]:
    """Every environment variable the package, tools/ and datasets/ read: {name: file}
    (``os.environ.setdefault`` sets a variable for other programs: not a read)."""
    found = {}
    files = [*(ROOT / "cat_seg").rglob("*.py"), *(ROOT / "tools").glob("*.py"),
             *(ROOT / "datasets").glob("*.py")]
    for path in files:
        tree = ast.parse(path.read_text())
        constants = {t.id: node.value.value for node in ast.walk(tree)
                     if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                     and isinstance(node.value.value, str)
                     for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            argument = None
            if isinstance(node, ast.Call) and node.args:
                function = ast.unparse(node.func)
                if function in ("os.getenv", "os.environ.get", "environ.get"):
                    argument = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                argument = node.slice
            if isinstance(argument, ast.Constant):
                found[argument.value] = str(path)
            elif isinstance(argument, ast.Name) and argument.id in constants:
                found[constants[argument.id]] = str(path)
            elif argument is not None:  # a loop over names: each must still be classified
                found[ast.unparse(argument)] = str(path)
    return found


def test_every_environment_variable_is_a_tested_path_or_not_a_path():
    variables = _environment_variables()
    tested = {place.dest[1:] for place in PLACES if place.dest.startswith("$")}
    unclassified = set(variables) - tested - set(ENV_NOT_PATHS)
    assert not unclassified, {name: variables[name] for name in unclassified}
    assert {"DETECTRON2_DATASETS", "AHS_SEG_CACHE", "XDG_CACHE_HOME"} <= set(variables)


@pytest.fixture(scope="module")
def context(tmp_path_factory, write_tiny_config):
    folder = tmp_path_factory.mktemp("inputs")
    config = write_tiny_config(folder / "tiny.yaml")
    weights = folder / "w.pth"
    weights.write_bytes(b"not read: every check comes before the model")
    rng = np.random.default_rng(0)
    for name in ("images", "labels"):
        (folder / name).mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / "img.png")
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
        folder / "images" / "a.jpg")
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(folder / "labels" / "a.png")
    (folder / "classes.txt").write_text("sky\ngrass\n")
    (folder / "ids.txt").write_text("2008_000001\n")
    (folder / "vocabulary.json").write_text('["sky", "grass"]')
    description = folder / "good.yaml"
    description.write_text("name: good\nimage_dir: images\nlabel_dir: labels\n"
                           "classes: classes.txt\n")
    return Context(folder, config, str(weights), str(folder / "img.png"),
                   str(folder / "vocabulary.json"), str(description))


def _wrong_path(folder: Path, wrong: str, suffix: str) -> str:
    """A path of the ``wrong`` kind in ``folder`` (a fresh one per case)."""
    if wrong == "absent":
        return str(folder / "absent" / f"missing{suffix}")
    if wrong == "a folder":
        path = folder / f"a_folder{suffix}"
        path.mkdir()
        return str(path)
    path = folder / "a_file"
    path.write_text("a file")
    return str(path) if wrong == "a file" else str(path / f"below{suffix}")


_SUFFIXES = {"config_file": ".yaml", "weights": ".pth", "vocabulary_file": ".json",
             "descriptions": ".yaml", "compare": ".yaml", "json": ".json", "markdown": ".md",
             "DATASETS.FOLDER_DATASETS": ".yaml", "MODEL.WEIGHTS": ".pth", CLIP_WEIGHTS: ".pt",
             "classes": ".txt", "split_file": ".txt", "inputs": ".png"}


@dataclass
class Outcome:
    status: object           # exit status: an int, or the message of a SystemExit
    message: str             # the final error line(s): SystemExit's message or the logged error
    lines: List[str]         # everything written and logged
    work_started: bool


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture()
def run_command(monkeypatch, capsys):
    """``run(argv, env)``: ``ahs-seg ARGV`` in this process, every launch and model build
    replaced by a tripwire; returns an :class:`Outcome`."""
    import detectron2.modeling

    import cat_seg.cli.analyze as analyze
    import cat_seg.cli.convert as convert
    import cat_seg.demo.web as web
    import cat_seg.engine.benchmarks as benchmarks
    import cat_seg.engine.launch as launch

    def tripwire(*args, **kwargs):
        raise WorkStarted

    for module, name in ((launch, "launch"), (benchmarks, "launch"), (web, "serve"),
                         (detectron2.modeling, "build_model"),
                         (convert, "load_downloaded_checkpoint"), (analyze, "analyze"),
                         (analyze, "compare"), (analyze, "build_analysis_model")):
        monkeypatch.setattr(module, name, tripwire)
    monkeypatch.setattr(cli, "prepare_entry_point", lambda **kwargs: None)
    monkeypatch.setattr(launch, "prepare_entry_point", lambda **kwargs: None)
    monkeypatch.setattr(sys, "argv", list(sys.argv))

    def run(argv, env):
        for name in ("DETECTRON2_DATASETS", "AHS_SEG_CACHE", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        records = _Records()
        logging.getLogger().addHandler(records)
        logger = logging.getLogger("cat_seg")
        propagate, level = logger.propagate, logger.level
        logger.propagate, logger.level = True, logging.INFO
        work_started, message = False, ""
        try:
            status = cli.main(argv)
        except WorkStarted:
            status, work_started = 0, True
        except SystemExit as stop:
            status = stop.code
            message = stop.code if isinstance(stop.code, str) else ""
        finally:
            logging.getLogger().removeHandler(records)
            logger.propagate, logger.level = propagate, level
            from cat_seg.data.benchmarks import register_all_benchmarks

            register_all_benchmarks()  # the default root again
        captured = capsys.readouterr()
        logged = [record.getMessage() for record in records.records]
        errors = [record.getMessage() for record in records.records
                  if record.levelno >= logging.ERROR]
        if not message and errors:
            message = errors[-1]
        lines = (captured.out + captured.err).splitlines() + \
            [line for text in logged for line in text.splitlines()]
        return Outcome(status, message, lines, work_started)

    return run


def _failed(status) -> bool:
    return isinstance(status, str) or (isinstance(status, int) and status != 0)


CASES = [pytest.param(place, wrong, id=f"{place.id} | {wrong}")
         for place in PLACES for wrong in WRONG[place.kind]]


@pytest.mark.parametrize("place, wrong", CASES)
def test_a_path_of_the_wrong_kind_stops_with_one_line(place, wrong, context, run_command,
                                                      tmp_path):
    path = _wrong_path(tmp_path, wrong, _SUFFIXES.get(place.dest, ""))
    argv, env = place.build(context, path)
    outcome = run_command(argv, env)
    assert not outcome.work_started, f"{place.id}: {path} ({wrong}) passed the checks"
    assert _failed(outcome.status), (place.id, outcome.status, outcome.lines)
    assert not any("Traceback" in line for line in outcome.lines), outcome.lines
    shown = outcome.lines if place.report else [outcome.message]
    about = [line for line in shown
             if (path in line or os.path.dirname(path) in line) and STATES[wrong] in line]
    assert about, f"{place.id}: no line says {path} {STATES[wrong]}: {outcome.message!r}"
    assert "\n" not in about[0] and FIX_WORDS.search(about[0].split(STATES[wrong], 1)[1]), \
        f"{place.id}: the line names no fix: {about[0]!r}"


@pytest.mark.parametrize("place", [pytest.param(p, id=p.id) for p in PLACES])
def test_the_same_place_with_a_good_path_passes_its_check(place, context, run_command):
    """The control: with a good path there, nothing is said about it (the command reaches its
    work, or stops later for another reason)."""
    good = place.good(context)
    if place.kind in (OUT_FOLDER, OUT_FILE) or place.dest in ("root", "$DETECTRON2_DATASETS"):
        os.makedirs(good if place.kind != OUT_FILE else os.path.dirname(good), exist_ok=True)
    argv, env = place.build(context, good)
    outcome = run_command(argv, env)
    complaints = [line for line in outcome.lines + [outcome.message]
                  if good in line and any(state in line for state in STATES.values())]
    assert not complaints, complaints


def test_a_root_under_a_file_is_named_once(tmp_path):
    """The dataset root and the download cache under a file: the line names the path once and
    the file on its way as a part of it, not the path twice."""
    from cat_seg.data.paths import check_dataset_root
    from cat_seg.utils.download import check_cache_dir

    blocker = tmp_path / "a_file"
    blocker.write_text("a file")
    path = str(blocker / "below")
    for check, expected in ((check_dataset_root, "the dataset root"),
                            (check_cache_dir, "the download cache")):
        with pytest.raises(NotADirectoryError) as error:
            check(path)
        message = str(error.value)
        assert message.count(str(blocker)) == 1, message
        assert f"{expected} {path} (" in message
        assert "cannot be created: its part a_file is a file, not a folder" in message


def test_the_ablation_script_names_a_config_folder_or_file_of_the_wrong_kind(tmp_path):
    """run_ahs_ablations.sh: CONFIG_DIR a file, or an ablation's config file a folder, is said
    as such, with the fix, in one line (not "does not exist"), before any work."""
    import subprocess

    a_file = tmp_path / "configs.yaml"
    a_file.write_text("")
    folders = tmp_path / "ablations"
    (folders / "mine_baseline.yaml").mkdir(parents=True)
    cases = [(a_file, f"CONFIG_DIR {a_file} is a file, not a folder; set CONFIG_DIR"),
             (folders, f"config file {folders}/mine_baseline.yaml is a folder, not a file; set")]
    for config_dir, expected in cases:
        result = subprocess.run(
            ["bash", str(ROOT / "run_ahs_ablations.sh"), "1", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "CONFIG_DIR": str(config_dir), "PREFIX": "mine",
                 "ABLATIONS": "baseline"})
        lines = result.stderr.splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"run_ahs_ablations.sh: {expected}"), lines[0]
        assert "does not exist" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("dataset", ["ade20k-150", "ade20k-847", "coco-stuff", "pascal-context",
                                     "voc"])
def test_the_prepare_scripts_prefix_their_one_line_stops(dataset, context, run_command, tmp_path):
    """Like every entry point's one-line errors ("[demo] ...", "[eval] ..."): the prepare
    scripts' start with "[prepare DATASET]", DATASET as ahs-seg prepare names it."""
    from cat_seg.cli.prepare import DATASETS

    assert dataset in DATASETS
    absent = str(tmp_path / "absent")
    for argv in (["--root", absent], ["--root", str(context.folder), "--expect", "nothing=1"]):
        outcome = run_command(["prepare", dataset, *argv, "--workers", "1"], {})
        assert _failed(outcome.status)
        assert outcome.message.startswith(f"[prepare {dataset}] "), outcome.message
    if dataset == "pascal-context":
        outcome = run_command(["prepare", dataset, "--root", str(context.folder), "--split-file",
                               absent], {})
        assert outcome.message.startswith(f"[prepare {dataset}] --split-file {absent} does not")


# The scripts that run the same commands, each once, as a user starts them: same line, no traceback.
SCRIPTS = {
    "train_net.py": lambda c, bad: [sys.executable, "train_net.py", "--config-file", bad],
    "tools/eval_benchmarks.py": lambda c, bad: [
        sys.executable, "tools/eval_benchmarks.py", "--config-file", c.config, "--weights", bad,
        "--output", c.out()],
    "tools/demo.py": lambda c, bad: [
        sys.executable, "tools/demo.py", c.image, "--vocabulary-file", bad, "--config-file",
        c.config, "--weights", c.weights, "--output", c.out()],
    "tools/web_demo.py": lambda c, bad: [sys.executable, "tools/web_demo.py", "--config-file", bad],
    "tools/convert_checkpoint.py": lambda c, bad: [
        sys.executable, "tools/convert_checkpoint.py", bad, c.out("converted.pth")],
    "tools/analyze_model.py": lambda c, bad: [
        sys.executable, "tools/analyze_model.py", "--config-file", bad],
    "tools/check_data.py": lambda c, bad: [sys.executable, "tools/check_data.py", bad],
    "datasets/prepare_voc.py": lambda c, bad: [
        sys.executable, "datasets/prepare_voc.py", "--root", bad + ".absent"],
    "run_ahs.sh": lambda c, bad: ["bash", "run_ahs.sh", bad],
    "eval_ahs.sh": lambda c, bad: ["bash", "eval_ahs.sh", c.config, bad, c.out()],
    "ahs-seg": lambda c, bad: [sys.executable, "-m", "cat_seg.cli", "demo", c.image,
                               "--vocabulary", "sky", "--config-file", bad],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_every_script_stops_on_a_folder_given_for_a_file_with_one_line(script, context,
                                                                       tmp_path):
    import subprocess

    bad = str(tmp_path / "a_folder.pth")
    os.mkdir(bad)
    expected = (bad + ".absent", STATES["absent"]) if script.startswith("datasets/") else \
        (bad, STATES["a folder"])
    result = subprocess.run(SCRIPTS[script](context, bad), cwd=ROOT, capture_output=True,
                            text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert expected[0] in last and expected[1] in last, result.stderr[-3000:]


# ================================================================================ (b) names

# Image file names a user may have (any byte but / and NUL is allowed on Linux), each a class of
# awkward name; (folder, name) pairs, several of which map to one name.
AWKWARD_IMAGES = [
    ("x", "img.png"), ("y", "img.png"),            # two folders holding img.png
    ("", "img_2.png"),                              # what the second img would be renamed to
    ("", "IMG.png"),                                # the same name in another case
    ("", "a_b.png"), ("", "a:b.png"), ("", "a\\b.png"),  # one name once made safe
    ("", "star*question?.png"), ("", "new\nline.png"), ("", "tab\there.png"),
    ("", ".hidden.png"), ("", "...png"), ("", "con.png"),
    ("", "café.png"), ("", "cafe\u0301.png"),        # é composed and decomposed
    ("", "天空 sky.png"),
    ("", "l" * 251 + ".png"),                       # the longest name a file may have
    ("", "é" * 123 + "x.png"),                      # 251 bytes, 124 characters
    ("", "l" * 240 + "-other.png"),                 # same start as the long one
]
# Class names that become file names (the demo's probability maps).
AWKWARD_CLASSES = ["a/b", "a\\b", "c:d*e?f", 'q"uote', "new\nline", ".hidden", "..", "con",
                   "café", "天空", "n" * 300, "#hash", "comma, synonym"]
_BAD_CHARACTERS = set('/\\:*?"<>|') | {chr(c) for c in range(32)} | {"\x7f"}


def _write_awkward_images(folder: Path) -> List[Tuple[str, Tuple[int, int]]]:
    """The images of AWKWARD_IMAGES, each of its own size: [(path, (height, width))]."""
    written = []
    for i, (sub, name) in enumerate(AWKWARD_IMAGES):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        size = (16 + i, 24)
        pixels = np.random.default_rng(i).integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / sub / name, format="PNG")
        written.append((str(folder / sub / name), size))
    return written


def _assert_valid_and_distinct(names: List[str]):
    assert len({n.casefold() for n in names}) == len(names), names  # also on case-blind disks
    for name in names:
        assert len(name.encode("utf-8")) <= 255, name
        assert not set(name) & _BAD_CHARACTERS and not name.startswith("."), repr(name)


@pytest.fixture(scope="module")
def tiny_checkpoint(context):
    import torch
    from detectron2.modeling import build_model

    from cat_seg.demo.images import setup_cfg

    torch.manual_seed(0)
    model = build_model(setup_cfg(context.config))
    path = context.folder / "tiny_model.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return str(path)


def test_demo_pictures_of_awkward_colliding_and_long_image_names_are_distinct_files(
        context, tiny_checkpoint, tmp_path):
    import demo

    images = _write_awkward_images(tmp_path / "in")
    vocabulary = tmp_path / "classes.json"
    vocabulary.write_text(json.dumps(AWKWARD_CLASSES))
    out = tmp_path / "out"
    results = demo.main([*[p for p, _ in images], "--vocabulary-file", str(vocabulary),
                         "--config-file", context.config, "--weights", tiny_checkpoint,
                         "--output", str(out), "--mode", "whole", "--probabilities"])
    assert [r["image"] for r in results] == [os.path.normpath(p) for p, _ in images]
    overlays = [os.path.basename(r["overlay"]) for r in results]
    labels = [os.path.basename(r["labels"]) for r in results]
    _assert_valid_and_distinct(overlays + labels)
    for result, (_, size) in zip(results, images):  # each file is its own image's: no overwrite
        with Image.open(result["labels"]) as label:
            assert (label.height, label.width) == size, result["image"]
        with Image.open(result["overlay"]) as overlay:
            assert overlay.width == size[1]
    # the probability maps: a file per class name, whatever the name
    maps = [os.path.basename(p) for p in results[0]["probabilities"]]
    assert len(maps) == len(AWKWARD_CLASSES) and all(os.path.isfile(p)
                                                      for p in results[0]["probabilities"])
    _assert_valid_and_distinct(maps)
    assert json.loads((out / "vocabulary.json").read_text()) == \
        [" ".join(name.split()) for name in AWKWARD_CLASSES]
    written = {p.name for p in out.iterdir()}
    assert len(written) == 3 * len(images) + 1  # overlay, labels, maps folder; vocabulary.json


def test_the_demo_never_writes_over_one_of_its_input_images(context, run_command, tmp_path):
    """--output the input folder, which holds x.png and an earlier run's x_overlay.png (an
    input too): x.png's overlay would replace it. The demo stops before any work, in one line
    naming the input and the fix; the same for a probability map, and in the Python API."""
    from cat_seg.demo.images import run_demo

    folder = tmp_path / "photos"
    (folder / "x_probabilities").mkdir(parents=True)
    for name in ("x.png", "x_overlay.png", "x_probabilities/0_sky.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name)
    before = (folder / "x_overlay.png").read_bytes()
    cases = [([str(folder)], [], "x_overlay.png", "overlay"),
             ([str(folder / "x.png"), str(folder / "x_probabilities")], ["--probabilities"],
              "0_sky.png", "probability map 0_sky.png")]
    for inputs, extra, clash, kind in cases:
        argv, env = _demo(context, *extra, output=str(folder))
        argv[1:2] = inputs
        outcome = run_command(argv, env)
        assert not outcome.work_started and _failed(outcome.status), outcome.lines
        assert "Traceback" not in "\n".join(outcome.lines)
        assert clash in outcome.message and f"{folder / 'x.png'}'s {kind}" in outcome.message
        assert "\n" not in outcome.message and "choose another output folder" in outcome.message
    assert (folder / "x_overlay.png").read_bytes() == before
    with pytest.raises(ValueError, match="x_overlay.png .it would become .*x.png's overlay"):
        run_demo(None, [str(folder / "x.png"), str(folder / "x_overlay.png")], ["sky"],
                 str(folder), progress=False)
    # Control: the input folder as --output is fine when no picture lands on an input.
    (folder / "x_overlay.png").unlink()
    argv, env = _demo(context, inputs=str(folder / "x.png"), output=str(folder))
    assert run_command(argv, env).work_started


def test_eval_pictures_of_awkward_colliding_and_long_image_names_are_distinct_files(tmp_path):
    """vis/<benchmark>/: one picture per image, named after it, never one for two."""
    import torch
    from detectron2.data import MetadataCatalog

    from cat_seg.engine.benchmarks import VisualizationWriter, write_vis_index

    images = _write_awkward_images(tmp_path / "in")
    name = "input_classes_vis"
    MetadataCatalog.get(name).set(stuff_classes=["sky", "grass"], ignore_label=255,
                                  evaluator_type="sem_seg")
    try:
        writer = VisualizationWriter(name, str(tmp_path / "vis" / "Bench"), count=len(images))
        writer.reset()
        for path, size in images:
            writer.process([{"file_name": path}], [{"sem_seg": torch.rand(2, *size)}])
    finally:
        MetadataCatalog.remove(name)
    _assert_valid_and_distinct(writer.pictures)
    assert len(writer.pictures) == len(images)
    folder = tmp_path / "vis" / "Bench"
    assert sorted(p.name for p in folder.iterdir()) == sorted(writer.pictures)
    for picture, (_, size) in zip(writer.pictures, images):  # each its own image's picture
        with Image.open(folder / picture) as panel:
            assert panel.height >= size[0] and (panel.height - size[0]) < 200, picture
    write_vis_index(str(tmp_path / "vis"), {"Bench": writer.pictures}, None, ["Bench"])
    from urllib.parse import unquote

    links = re.findall(r"\]\(([^)]+)\)", (tmp_path / "vis" / "index.md").read_text())
    assert len(links) == len(images)
    assert all((tmp_path / "vis" / unquote(link)).is_file() for link in links)


def test_per_class_csv_keeps_every_awkward_class_name(tmp_path):
    """Class names are cells, not file names: every one reads back as it was, with the csv
    module and with pandas' comment="#" (the run's record lines start with #)."""
    import uuid

    import torch
    from detectron2.data import MetadataCatalog

    from cat_seg.engine.benchmarks import write_per_class_table
    from cat_seg.evaluation import SemSegEvaluator
    from cat_seg.utils.results_folder import RunRecord, file_fingerprint

    classes = ["sky", "#hash", "mid#hash", "comma, synonym", 'q"uote', "new\nline", "café",
               "天空", "n" * 300]
    name = f"input_classes_csv_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(stuff_classes=classes, ignore_label=255,
                                  evaluator_type="sem_seg")
    label = np.arange(len(classes), dtype=np.uint8).repeat(4).reshape(len(classes), 4)
    Image.fromarray(label).save(tmp_path / "label.png")
    evaluator = SemSegEvaluator(name, distributed=False)
    evaluator.reset()
    scores = torch.nn.functional.one_hot(torch.as_tensor(label, dtype=torch.int64),
                                         len(classes)).permute(2, 0, 1).float()
    evaluator.process([{"file_name": "x.png", "sem_seg_file_name": str(tmp_path / "label.png")}],
                      [{"sem_seg": scores}])
    evaluator.evaluate()
    path = tmp_path / "sem_seg_per_class.csv"
    (tmp_path / "w.pth").write_bytes(b"weights")
    record = RunRecord(weights=file_fingerprint(str(tmp_path / "w.pth")), config_file="c.yaml",
                       opts=[], planned=[name])
    write_per_class_table(evaluator, str(path), record, [name])
    MetadataCatalog.remove(name)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert [row["class"] for row in rows] == classes
    assert all(row["IoU"] == "100.0000" for row in rows)
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(path, comment="#", keep_default_na=False)
    assert [c for c in table["class"]] == classes


def test_class_names_with_control_characters_are_refused_where_names_come_in(tmp_path):
    """A NUL or an escape in a class name (possible in JSON) is refused by the vocabulary of
    the demo and the predictor and by a description's class list; whitespace (a newline) is a
    space."""
    from cat_seg.data.folder_dataset import FolderDatasetError, read_folder_dataset_description
    from cat_seg.demo.images import parse_vocabulary
    from cat_seg.predictor import check_class_names

    names = ["sky", "nul\x00byte", "escape\x1b[0m"]
    (tmp_path / "classes.json").write_text(json.dumps(names))
    with pytest.raises(ValueError, match="control characters .* position.s. \\[2, 3\\]"):
        parse_vocabulary(file=str(tmp_path / "classes.json"))
    with pytest.raises(ValueError, match="control characters"):
        check_class_names(names)
    (tmp_path / "d.yaml").write_text("name: d\nimage_dir: i\nlabel_dir: l\nclasses: classes.json\n")
    with pytest.raises(FolderDatasetError, match="control characters"):
        read_folder_dataset_description(str(tmp_path / "d.yaml"))
    assert parse_vocabulary(file=_json(tmp_path, ["new\nline", "tab\there"])) == \
        ["new line", "tab here"]


def _json(folder, names):
    (folder / "names.json").write_text(json.dumps(names))
    return str(folder / "names.json")


def test_description_names_too_long_or_equal_but_for_case_are_refused(tmp_path):
    """Dataset and benchmark names name the per-class CSV and vis/<benchmark>/."""
    from cat_seg.data.folder_dataset import (FolderDatasetError, read_folder_dataset_description,
                                             register_folder_dataset)

    long_name = tmp_path / "long.yaml"
    long_name.write_text(f"name: {'n' * 101}\nclasses: [a]\nimage_dir: x\nlabel_dir: y\n")
    with pytest.raises(FolderDatasetError, match="at most 100"):
        read_folder_dataset_description(str(long_name))
    clash = tmp_path / "clash.yaml"
    clash.write_text("name: clash\nclasses: [a]\nimage_dir: x\nlabel_dir: y\n"
                     "splits:\n  val: {benchmark: Fruit}\n  test: {benchmark: fruit}\n")
    with pytest.raises(FolderDatasetError, match="several splits have the benchmark name"):
        read_folder_dataset_description(str(clash))
    builtin = tmp_path / "builtin.yaml"
    builtin.write_text("name: mine\nbenchmark: a-150\nclasses: [a]\nimage_dir: x\n"
                       "label_dir: y\n")
    with pytest.raises(FolderDatasetError, match="already the short name of dataset"):
        register_folder_dataset(str(builtin))


# ================================================================================ (c) shipped

def _shipped_class_files() -> List[Path]:
    """Every class-name file the repository ships: the benchmarks' lists, the class files of
    configs/ and docs/ (and examples/ when there is one), and those that shipped dataset
    descriptions name."""
    found = set((ROOT / "cat_seg" / "data" / "class_names").glob("*.json"))
    for folder in ("configs", "docs", "examples"):
        found |= {p for p in (ROOT / folder).rglob("*") if p.suffix in (".txt", ".json")}
    for description in (ROOT / "configs").rglob("*.yaml"):
        text = description.read_text()
        for value in re.findall(r"^\s*classes:\s*([^\s\[#]+)", text, flags=re.M):
            found.add((description.parent / value).resolve())
    return sorted(found)


SHIPPED = _shipped_class_files()
TOOLS = ["demo --vocabulary-file", "Segmenter (predictor)", "description classes + check-data"]


def test_the_shipped_class_files_are_found():
    names = {p.name for p in SHIPPED}
    assert {"ade150.json", "ade847.json", "coco.json", "pc459.json", "pc59.json", "voc20.json",
            "voc20b.json", "synthetic_seen_classes.txt"} <= names
    assert all(p.is_file() for p in SHIPPED)


@pytest.fixture(scope="module")
def segmenter(context, tiny_checkpoint):
    from cat_seg import Segmenter

    return Segmenter.from_config(context.config, tiny_checkpoint, device="cpu")


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_class_file_works_in_every_tool_that_takes_one(path, tool, context,
                                                                    tiny_checkpoint, segmenter,
                                                                    tmp_path):
    from cat_seg.data.folder_dataset import (FolderDatasetError, check_folder_dataset,
                                             read_folder_dataset_description)
    from cat_seg.demo.images import parse_vocabulary

    names = parse_vocabulary(file=str(path))
    assert len(names) >= 2
    if tool == "demo --vocabulary-file":
        import demo

        results = demo.main([context.image, "--vocabulary-file", str(path), "--config-file",
                             context.config, "--weights", tiny_checkpoint, "--output",
                             str(tmp_path / "out"), "--mode", "whole", "--min-score", "0"])
        assert json.loads((tmp_path / "out" / "vocabulary.json").read_text()) == names
        assert results[0]["labels"] and sum(results[0]["fractions"].values()) == \
            pytest.approx(1.0)
    elif tool == "Segmenter (predictor)":
        result = segmenter(context.image, names, mode="whole", min_score=0)
        assert result.class_names == names and result.labels.max() < len(names)
        assert (result.labels >= 0).all()
    else:  # a description naming the file, as docs/custom_datasets.md shows
        description = tmp_path / "mine.yaml"
        text = (f"name: shipped_{path.stem}\nimage_dir: {context.folder}/images\n"
                f"label_dir: {context.folder}/labels\nclasses: {path}\n")
        if len(names) >= 255:  # 255 is a class index: the message says which value to take
            description.write_text(text)
            with pytest.raises(FolderDatasetError, match="ignore_label 255 is the index of "
                                                         "class .* e.g. 65535"):
                read_folder_dataset_description(str(description))
            text += "ignore_label: 65535\n"
        description.write_text(text)
        (dataset,) = read_folder_dataset_description(str(description))
        assert list(dataset.class_names) == names
        report = check_folder_dataset(str(description), workers=1)
        assert report.ok, report.format()


def test_classes_that_share_only_their_first_synonym_are_kept_with_one_warning(tmp_path):
    """A-847 lists ten pairs such as 'pot, flowerpot' and 'pot' (a cooking pot): two classes the
    model prompts alike. They are accepted, and said once; the same name twice is refused."""
    from cat_seg.demo.images import parse_vocabulary

    records = _Records()
    logger = logging.getLogger("cat_seg.demo.images")
    logger.addHandler(records)
    try:
        for _ in range(2):
            names = parse_vocabulary(file=_json(tmp_path, ["pot, flowerpot", "pot", "sky"]))
            assert names == ["pot, flowerpot", "pot", "sky"]
    finally:
        logger.removeHandler(records)
    warnings = [r.getMessage() for r in records.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'pot, flowerpot' and 'pot' (positions 1 and 2)" in warnings[0]
    with pytest.raises(ValueError, match="names a class twice"):
        parse_vocabulary(file=_json(tmp_path, ["pot, flowerpot", "Pot,flowerpot"]))


def test_every_vocabulary_the_docs_show_is_accepted():
    """The ``--vocabulary "..."`` and ``--vocabulary-file FILE`` of the README, docs/ and the
    demo's own help: each parses (the files exist)."""
    from cat_seg.demo.images import parse_vocabulary

    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "tools" / "demo.py"]
    typed, files = [], []
    for text in (p.read_text() for p in texts):
        typed += re.findall(r'--vocabulary "([^"]+)"', text)
        files += re.findall(r"--vocabulary-file ([\w./-]+)", text)
    assert typed and files
    for vocabulary in typed:
        assert parse_vocabulary(vocabulary)
    for file in files:
        assert parse_vocabulary(file=str(ROOT / file))
