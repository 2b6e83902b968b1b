"""The ``ahs-seg`` command (cat_seg/cli), paths that work from any folder, and the packaging.

The end-to-end test starts the demo and an evaluation in a temporary folder outside the
repository, naming the shipped config by its repository-relative path, as a user who installed
the project would.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image

from cat_seg.cli import main as cli
from cat_seg.engine import AtomicCheckpointer, launch
from cat_seg.utils.paths import default_dataset_root, repository_root, resolve_repo_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = "configs/synthetic/quickstart.yaml"


def _ahs_seg(*args, cwd, **env):
    """``python -m cat_seg.cli ARGS`` in ``cwd`` (the package found as installed, or through
    PYTHONPATH as tools/bootstrap.sh sets it for a user's own interpreter)."""
    path = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "cat_seg.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **env})


def test_help_lists_every_subcommand_with_one_line(tmp_path):
    result = _ahs_seg("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("train", "eval", "demo", "web", "convert", "prepare", "analyze", "check-data"):
        assert f"  {name:<11} {cli.SUMMARIES[name]}" in result.stdout
    assert set(cli.SUBCOMMANDS) == set(cli.SUMMARIES)
    assert "FutureWarning" not in result.stderr  # torch.jit.script's, muted where it arises


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommand_has_a_main(name):
    assert callable(cli.load_subcommand(name).main)


def test_only_training_evaluation_and_measuring_change_the_allocator(monkeypatch):
    asked = {}

    def record(**settings):
        asked[current] = settings["allocator"]

    monkeypatch.setattr(cli, "prepare_entry_point", record)
    monkeypatch.setattr(launch, "prepare_entry_point", lambda **settings: None)  # ahs-train's
    for current in cli.SUBCOMMANDS:
        with pytest.raises(SystemExit):  # --help: the set-up ran, nothing else
            cli.main([current, "--help"])
    assert {name for name, allocator in asked.items() if allocator} == \
        {"train", "eval", "analyze"}
    assert set(asked) == set(cli.SUBCOMMANDS)


def test_a_subcommand_missing_from_the_installation_is_named(monkeypatch, caplog):
    monkeypatch.setitem(cli.SUBCOMMANDS, "check-data", "cat_seg.cli.not_there")
    with pytest.raises(cli.SubcommandUnavailable, match="check-data is not available"):
        cli.load_subcommand("check-data")


def test_prepare_dispatches_by_dataset_name(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["prepare", "voc", "--help"])
    assert stop.value.code == 0
    assert "PASCAL VOC 2012" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["prepare", "cityscapes"])
    assert "invalid choice: 'cityscapes'" in capsys.readouterr().err


def test_paths_typed_by_the_user_win_and_shipped_ones_are_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = os.path.join(repository_root(), QUICKSTART)
    assert resolve_repo_path(QUICKSTART) == shipped
    assert resolve_repo_path("configs/nope.yaml") == "configs/nope.yaml"  # the error names it
    assert resolve_repo_path("https://host/x.pth") == "https://host/x.pth"
    assert cli.resolve_config_arguments(["--config-file", QUICKSTART, "--config-file=x.yaml",
                                         "a.yaml"]) == ["--config-file", shipped,
                                                        "--config-file=x.yaml", "a.yaml"]
    # The datasets root: the repository's datasets/ unless the current folder has its own.
    assert default_dataset_root() == os.path.join(repository_root(), "datasets")
    (tmp_path / "configs" / "synthetic").mkdir(parents=True)
    (tmp_path / QUICKSTART).write_text("MODEL: {}\n")
    (tmp_path / "datasets").mkdir()
    assert resolve_repo_path(QUICKSTART) == QUICKSTART
    assert default_dataset_root() == "datasets"


def test_pyproject_declares_the_command_and_real_extras():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"]["ahs-seg"] == "cat_seg.cli.main:main"

    def requirements(name):
        lines = open(os.path.join(ROOT, name)).read().splitlines()
        return [line.split("#")[0].strip() for line in lines
                if line.split("#")[0].strip() and not line.startswith("-r")]

    runtime = " ".join(requirements("requirements.txt"))
    assert "pytest" not in runtime and "playwright" not in runtime and "gradio" not in runtime
    assert project["optional-dependencies"]["test"] == requirements("requirements-test.txt")
    assert project["optional-dependencies"]["demo"] == requirements("requirements-demo.txt")


@pytest.fixture(scope="module")
def quickstart_weights(tmp_path_factory, make_cfg):
    cfg = make_cfg(os.path.join(ROOT, QUICKSTART), MODEL__DEVICE="cpu")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    AtomicCheckpointer(build_model(cfg), save_dir=str(folder)).save("quickstart")
    return str(folder / "quickstart.pth")


@pytest.mark.slow
def test_demo_and_evaluation_run_from_a_folder_outside_the_repository(
        tmp_path, quickstart_weights, write_prepared_benchmarks):
    work = tmp_path / "elsewhere"
    work.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(work / "photo.png")
    # The config is named as in the README (relative to the repository); its CLIP weights,
    # pretrained/ahs_tiny16_synthetic.pt inside the YAML, are found in the repository too.
    demo = _ahs_seg("demo", "photo.png", "--vocabulary", "sky, grass, person",
                    "--config-file", QUICKSTART, "--weights", quickstart_weights,
                    "--output", "out", "--device", "cpu", cwd=work)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (work / "out" / "photo_overlay.png").is_file()
    assert (work / "out" / "vocabulary.json").is_file()
    assert "FutureWarning" not in demo.stderr

    data = tmp_path / "data"
    write_prepared_benchmarks(data, num_images=1, size=(24, 32),
                              dataset_names=["ade20k_150_test_sem_seg"])
    evaluation = _ahs_seg("eval", "--config-file", QUICKSTART, "--weights", quickstart_weights,
                          "--output", "eval", "--benchmarks", "A-150", "MODEL.DEVICE", "cpu",
                          "TEST.SLIDING_WINDOW", "False", cwd=work,
                          DETECTRON2_DATASETS=str(data))
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert (work / "eval" / "results.json").is_file()
    assert "A-150" in (work / "eval" / "results.md").read_text()


def test_without_detectron2_the_import_names_the_command_that_installs_it(tmp_path):
    # A finder that hides detectron2, as in an environment where `pip install -e .` ran alone.
    code = ("import sys\n"
            "class Hide:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'detectron2':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Hide())\n"
            "import cat_seg\n")
    path = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": path})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: AHS-Seg needs detectron2")
    assert "tools/bootstrap.sh" in last and "pip install --no-deps" in last
    assert "sal-detectron2==0.7.2" in last
