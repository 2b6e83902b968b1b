"""detectron2's and fvcore's modules, imported once: a clear stop without detectron2, and their
import-time FutureWarning muted.

detectron2 is not on PyPI under its own name, so ``pip install -e .`` cannot install it; without
it, ``import cat_seg`` stops here with the command that installs it instead of a bare
``ModuleNotFoundError``.

``fvcore.nn`` (focal losses) and ``detectron2.modeling.box_regression`` apply
``torch.jit.script`` when they are imported; torch >= 2.6 deprecates it and warns, so every
command printed two ``FutureWarning: torch.jit.script is deprecated`` lines about code this
project never runs. ``cat_seg`` imports this module before anything else of detectron2: the
warning is muted for those imports only (the filter is restored after them), and any other
code that scripts a function still gets it.
"""
import os
import sys
import sysconfig
import warnings

# What tools/bootstrap.sh runs (the wheel is tagged cp310 but is pure Python apart from the
# compiled `_C` extension, which this project never loads).
DETECTRON2_WHEEL = "sal-detectron2==0.7.2"


def detectron2_install_command() -> str:
    """The pip command that installs detectron2 into this interpreter."""
    site = sysconfig.get_paths()["purelib"]
    return (f"{sys.executable} -m pip install --no-deps --only-binary=:all: --python-version 3.10 "
            f"--target {site} {DETECTRON2_WHEEL}")


try:
    import detectron2  # noqa: F401
except ModuleNotFoundError as error:
    if error.name != "detectron2":
        raise
    bootstrap = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "tools", "bootstrap.sh")
    if not os.path.isfile(bootstrap):  # not a checkout: the repository's script
        bootstrap = "tools/bootstrap.sh"
    raise ImportError(
        f"AHS-Seg needs detectron2, which is not installed for {sys.executable} (pip cannot "
        "install it as a dependency: it is not on PyPI under its own name). Either run "
        f"`bash {bootstrap}` (a .venv with everything), or install it into this environment: "
        f"{detectron2_install_command()}") from None

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                            category=FutureWarning)
    import fvcore.nn  # noqa: F401
    import detectron2.modeling  # noqa: F401
