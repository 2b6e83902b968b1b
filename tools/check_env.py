"""Exit 0 when this Python interpreter satisfies ``requirements.txt`` and has detectron2.

Used by ``tools/bootstrap.sh`` to decide between the current interpreter and ``./.venv``.
Prints the first unmet requirement on failure, so a user sees why a venv is being built.
"""
import sys
from pathlib import Path


def main() -> int:
    try:
        from importlib.metadata import PackageNotFoundError, version

        from packaging.requirements import Requirement
    except ImportError as e:  # `packaging` missing: this interpreter is not set up
        print(f"check_env: {e}")
        return 1
    req_file = Path(__file__).resolve().parent.parent / "requirements.txt"
    for line in req_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
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


if __name__ == "__main__":
    sys.exit(main())
