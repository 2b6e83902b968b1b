"""Dispatch of ``ahs-seg SUBCOMMAND ARGS``: each subcommand is a module with ``main(argv)``.

A subcommand's module is imported only when it runs, so ``ahs-seg --help`` answers at once and a
subcommand pays only for its own imports. Its ``main(argv)`` returns an exit status (``None``
or anything that is not an int counts as success) or raises; an ``OSError`` / ``ValueError``
(bad input: a missing file, an invalid value) ends the command with one line naming it.

Entries that are not modules of the package are scripts of the repository checkout
(``tools/demo.py``, ...), loaded from the repository this package belongs to: they are the
owners of those commands, and the package runs them as they are.

Paths: what the user types means what it means in the shell, relative to the current folder. A
``--config-file`` that does not exist there but names a shipped config (``configs/...``) is
handed to every subcommand as the repository's file
(:func:`cat_seg.utils.paths.resolve_repo_path`), so any command works from any folder.
"""
import argparse
import importlib
import importlib.util
import logging
import os
import sys
from types import ModuleType
from typing import Dict, List, Optional

from ..utils.console import prepare_entry_point
from ..utils.paths import repository_root, resolve_repo_path

PROG = "ahs-seg"

logger = logging.getLogger(__name__)

# name -> module path (``package.module``) or a repository script (``tools/x.py``) whose
# ``main(argv)`` runs the subcommand.
SUBCOMMANDS: Dict[str, str] = {
    "train": "cat_seg.cli.train",
    "eval": "cat_seg.cli.evaluate",
    "demo": "tools/demo.py",
    "web": "tools/web_demo.py",
    "convert": "cat_seg.cli.convert",
    "prepare": "cat_seg.cli.prepare",
    "analyze": "cat_seg.cli.analyze",
    "check-data": "cat_seg.cli.check_data",
}

# One line per subcommand for ``ahs-seg --help`` (kept here so the help imports nothing heavy).
SUMMARIES: Dict[str, str] = {
    "train": "train (or --eval-only) a model: detectron2's command line, GPUs and nodes",
    "eval": "evaluate weights on several benchmarks with the test protocol; results table",
    "demo": "segment your images into your own class names; writes overlays and label maps",
    "web": "browser demo: upload an image, type class names",
    "convert": "official CAT-Seg checkpoint (file, URL or hf://repo/file) -> AHS-Seg weights",
    "prepare": "convert a downloaded benchmark (ade20k-150, voc, ...) into the training layout",
    "analyze": "parameters, FLOPs, memory and latency of a config's model",
    "check-data": "validate a dataset (sizes, label ids, unreadable files) before training",
}


# Subcommands whose process makes glibc keep freed memory for reuse (cat_seg.utils.allocator):
# training, evaluation and the measurements, which repeat the same large allocations. The demos,
# conversion and data tools keep the C library's settings, as their scripts do (measured on the
# demo: the reuse settings raise its peak, tools/demo.py).
KEEPS_FREED_MEMORY = frozenset({"train", "eval", "analyze"})


class SubcommandUnavailable(RuntimeError):
    """The subcommand's code is not part of this installation."""


def load_subcommand(name: str) -> ModuleType:
    """The module that runs subcommand ``name`` (imported now)."""
    target = SUBCOMMANDS[name]
    if target.endswith(".py"):
        path = os.path.join(repository_root(), target)
        if not os.path.isfile(path):
            raise SubcommandUnavailable(
                f"{PROG} {name} runs {target} of the repository checkout, which is not at {path}; "
                "install the project from its repository (pip install -e .)")
        spec = importlib.util.spec_from_file_location(f"ahs_seg_script_{name.replace('-', '_')}",
                                                      path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            if error.name != target:  # a dependency is missing: that is not this message
                raise
            raise SubcommandUnavailable(
                f"{PROG} {name} is not available in this version yet ({target} is missing)")
    if not callable(getattr(module, "main", None)):
        raise SubcommandUnavailable(f"{PROG} {name}: {target} has no main(argv) function")
    return module


def resolve_config_arguments(argv: List[str]) -> List[str]:
    """``argv`` with the value of each ``--config-file`` (also ``--config-file=...``) resolved by
    :func:`cat_seg.utils.paths.resolve_repo_path`; everything else unchanged."""
    resolved = []
    expects_config = False
    for argument in argv:
        if expects_config:
            resolved.append(resolve_repo_path(argument))
            expects_config = False
        elif argument == "--config-file":
            resolved.append(argument)
            expects_config = True
        elif argument.startswith("--config-file="):
            resolved.append("--config-file=" + resolve_repo_path(argument.split("=", 1)[1]))
        else:
            resolved.append(argument)
    return resolved


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="AHS-Seg: open-vocabulary semantic segmentation (CAT-Seg head over CLIP).",
        epilog="subcommands:\n"
        + "\n".join(f"  {name:<11} {SUMMARIES[name]}" for name in SUBCOMMANDS)
        + f"\n\n'{PROG} SUBCOMMAND --help' describes a subcommand's arguments. Relative paths you "
        "type resolve against the current folder; the shipped configs/ and pretrained/ are found "
        "from any folder.")
    parser.add_argument("subcommand", metavar="SUBCOMMAND", choices=list(SUBCOMMANDS),
                        help=", ".join(SUBCOMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the subcommand's arguments")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``ahs-seg`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 2
    name = parser.parse_args(argv[:1]).subcommand
    prepare_entry_point(allocator=name in KEEPS_FREED_MEMORY)
    try:
        module = load_subcommand(name)
    except SubcommandUnavailable as error:
        logger.error(f"[{PROG}] {error}")
        return 1
    arguments = resolve_config_arguments(argv[1:])
    # argparse inside the subcommand names itself "ahs-seg NAME" in its usage lines.
    sys.argv = [f"{PROG} {name}"] + arguments
    try:
        status = module.main(arguments)
    except (OSError, ValueError) as error:
        logger.debug("%s %s failed", PROG, name, exc_info=True)
        logger.error(f"[{PROG} {name}] {error}")
        return 1
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
