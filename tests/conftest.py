"""Fixtures shared by the test files.

Implementations live in the plain helper package ``tests/helpers`` (not test modules); the
fixtures hand them to tests. No test imports another test module or edits the import path:
pytest.ini's ``pythonpath`` makes the repository (``cat_seg``, ``train_net``), ``tools/``
(``import demo``, ``import analyze_model``...), ``datasets/`` and ``tests/`` (``helpers``)
importable.

Configs
  make_cfg            factory: mutable config = defaults + AHS keys [+ file] [+ opts / KEY__SUB=value]
  write_tiny_config   factory: write the tiny model's YAML to a path (resolution, window, modules)
  tiny_config_file    the tiny model's YAML, written once per session
  tiny_cfg            that file through ``cat_seg.build_config`` (frozen, validated)
Tiny CLIP (AHS-Tiny/16, random weights, 96 px)
  tiny_backbone       factory: (seed=0, **CLIPBackbone overrides) -> CLIPBackbone
  random_images       factory: (backbone, batch=2, seed=2) -> normal images at its resolution
  perturb_adapter     factory: (backbone, scale=0.05, seed=1) moves the adapter off identity
  openai_layout       function: split q/k/v state dict -> OpenAI / open_clip packed layout
Benchmarks
  write_prepared_benchmarks, write_label   miniature prepared copies of the benchmark splits
"""
import pytest

from cat_seg import build_config
from helpers import benchmarks, clip, configs


# ------------------------------------------------------------------------------------- configs

@pytest.fixture(scope="session")
def make_cfg():
    """:func:`helpers.configs.make_cfg`: ``make_cfg(config_file=None, opts=(), **keys)``."""
    return configs.make_cfg


@pytest.fixture(scope="session")
def write_tiny_config():
    """:func:`helpers.configs.write_tiny_config`: ``(path, resolution=64, window=2, modules=())``."""
    return configs.write_tiny_config


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory):
    """Path (str) of the tiny model's YAML: 64 px, window 2, AHS modules off."""
    return configs.write_tiny_config(tmp_path_factory.mktemp("tiny_config") / "tiny.yaml")


@pytest.fixture(scope="session")
def tiny_cfg(tiny_config_file):
    """The tiny model's frozen config, built as the entry points build theirs."""
    return build_config(tiny_config_file)


# ------------------------------------------------------------------------------------ tiny CLIP

@pytest.fixture(scope="session")
def tiny_backbone():
    return clip.tiny_backbone


@pytest.fixture(scope="session")
def random_images():
    return clip.random_images


@pytest.fixture(scope="session")
def perturb_adapter():
    return clip.perturb_adapter


@pytest.fixture(scope="session")
def openai_layout():
    return clip.openai_layout


# ----------------------------------------------------------------------------------- benchmarks

@pytest.fixture(scope="session")
def write_prepared_benchmarks():
    """:func:`helpers.benchmarks.write_prepared_benchmarks`: ``(root, num_images=2, size=(24, 32),
    seed=0, dataset_names=None) -> {dataset name: image stems}``."""
    return benchmarks.write_prepared_benchmarks


@pytest.fixture(scope="session")
def write_label():
    """:func:`helpers.benchmarks.write_label`: ``(path, label)``, PNG or 16-bit TIFF by suffix."""
    return benchmarks.write_label
