"""Exit 0 when this Python interpreter satisfies ``requirements.txt`` and has detectron2.

Used by ``tools/bootstrap.sh`` to decide between the current interpreter and ``./.venv``.
Prints the first unmet requirement on failure, so a user sees why a venv is being built.

``--tests``: instead, exit 0 when the test requirements (``requirements-test.txt``: pytest,
playwright) are met too.

``--package``: instead, exit 0 when ``import cat_seg`` (from any folder) resolves to this
checkout's ``cat_seg/``, i.e. the project is installed (``pip install -e .``) or on PYTHONPATH;
the package is located without being imported (no torch start-up).
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirement_lines(path: Path):
    """The requirement lines of a pip requirements file, following ``-r other.txt``."""
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            yield from _requirement_lines(path.parent / line[3:].strip())
        elif line:
            yield line


def requirements_met(req_file: Path = ROOT / "requirements.txt") -> int:
    try:
        from importlib.metadata import PackageNotFoundError, version

        from packaging.requirements import Requirement
    except ImportError as e:  # `packaging` missing: this interpreter is not set up
        print(f"check_env: {e}")
        return 1
    for line in _requirement_lines(req_file):
        req = Requirement(line)
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            print(f"check_env: {req.name} is not installed")
            return 1
        # Local version labels (+cu130, +cpu) are irrelevant to the range check.
        if not req.specifier.contains(installed.split("+")[0], prereleases=True):
            print(f"check_env: {req.name} {installed} does not satisfy '{req.specifier}'")
            return 1
    try:
        import detectron2  # noqa: F401
    except ImportError:
        print("check_env: detectron2 is not importable")
        return 1
    return 0


def package_here() -> int:
    import importlib.util

    # sys.path[0] is this script's folder (tools/), not the repository root: the root counts
    # only when installed or on PYTHONPATH, as for every tool.
    spec = importlib.util.find_spec("cat_seg")
    found = os.path.dirname(spec.origin) if spec is not None and spec.origin else None
    if found is None or Path(found).resolve() != ROOT / "cat_seg":
        print(f"check_env: import cat_seg resolves to {found or 'nothing'}, not {ROOT / 'cat_seg'}")
        return 1
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--package"]:
        return package_here()
    if argv == ["--tests"]:
        return requirements_met(ROOT / "requirements-test.txt")
    return requirements_met()


if __name__ == "__main__":
    sys.exit(main())
