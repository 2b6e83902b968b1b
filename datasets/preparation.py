"""Shared machinery of the ``datasets/prepare_*.py`` scripts.

Each script turns an official download into CAT-Seg's layout (see ``README.md`` here). This
module gives them the same behaviour:

* **resumable**: a file is written to a hidden temporary name and renamed when complete, so an
  existing output is always whole and is skipped on the next run (``--overwrite`` redoes it);
* **parallel**: files are converted by a ``multiprocessing`` pool of ``--workers`` processes;
* **progress**: a ``tqdm`` bar per conversion (shown on terminals);
* **summary**: a final report that counts the files each output folder holds, compares them with
  the official counts (``--expect KEY=N`` overrides one, e.g. for a subset), names missing
  source folders with the download that provides them, lists failed files, checks that every
  image and its label have the same size (listing the pairs that differ), and sets the exit
  status (0 only when every check passed);
* **one-line stops**: a bad argument (``--root`` not a folder, ``--expect``...) stops the script
  with one line starting ``[prepare DATASET]`` (:func:`entry_point`), as the other entry points'.

Only numpy, Pillow, scipy and tqdm are needed; the scripts do not import ``cat_seg``.
"""
import argparse
import functools
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from cat_seg.data.paths import dataset_root

# Files converted per pool hand-out: large enough to amortise inter-process traffic, small
# enough for a smooth progress bar.
_CHUNKSIZE = 8
# Failed files printed by name in the summary (the rest are counted).
_MAX_LISTED = 10
# PIL modes of single-channel integer maps.
_INDEX_MODES = {"L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def build_parser(description: str, expected: Dict[str, int]) -> argparse.ArgumentParser:
    """Arguments every prepare script takes; ``expected`` maps count keys to official counts."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default=dataset_root(),
        help="dataset root (default: $DETECTRON2_DATASETS, else ./datasets)",
    )
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1),
        help="conversion processes (default: min(8, CPU count)); 1 converts in this process",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="convert again files that already exist"
    )
    official = ", ".join(f"{k}={v}" for k, v in expected.items())
    parser.add_argument(
        "--expect", action="append", default=[], metavar="KEY=N",
        help=f"expected file count to check instead of the official one ({official}); "
        "repeatable, e.g. for a partial download",
    )
    return parser


def entry_point(dataset: str) -> Callable:
    """Decorates a script's ``main``: the lines it stops with (``SystemExit`` with a message)
    start with ``[prepare DATASET]``, as every entry point's do (``[demo] ...``, ``[eval] ...``);
    ``DATASET`` is the script's name in ``ahs-seg prepare``."""
    def decorate(main: Callable) -> Callable:
        @functools.wraps(main)
        def run(argv=None):
            try:
                return main(argv)
            except SystemExit as stop:
                if isinstance(stop.code, str):  # argparse's own exits carry a number
                    raise SystemExit(f"[prepare {dataset}] {stop.code}") from None
                raise
        return run
    return decorate


def checked_root(args: argparse.Namespace) -> Path:
    """``--root`` (default ``$DETECTRON2_DATASETS``) resolved, when it is a folder; otherwise the
    script stops with one line naming it and the fix."""
    root = Path(args.root)
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise SystemExit(f"the dataset root {root} {state}; unpack the downloads into a folder "
                         "(datasets/README.md) and pass it with --root or DETECTRON2_DATASETS")
    return root.resolve()


def checked_file(path: str, what: str, fix: str) -> Path:
    """``path`` when it is a file; otherwise the script stops with one line naming it."""
    if not os.path.isfile(path):
        state = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise SystemExit(f"{what} {path} {state}; {fix}")
    return Path(path)


def expected_counts(args: argparse.Namespace, official: Dict[str, int]) -> Dict[str, int]:
    """The official counts with the ``--expect KEY=N`` overrides applied."""
    counts = dict(official)
    for item in args.expect:
        key, sep, value = item.partition("=")
        if not sep or key not in official or not value.isdigit():
            raise SystemExit(
                f"--expect {item!r}: expected KEY=N with KEY one of {sorted(official)} and N a "
                "non-negative integer"
            )
        counts[key] = int(value)
    return counts


# ---------------------------------------------------------------------------- reading / writing
def read_index_map(path: Path) -> np.ndarray:
    """A single-channel integer label map (8- or 16-bit PNG / TIFF), values as stored."""
    with Image.open(path) as img:
        if img.mode not in _INDEX_MODES:
            raise ValueError(
                f"{path} has image mode {img.mode!r}, not a single-channel label map"
            )
        return np.asarray(img)


def check_values(label: np.ndarray, valid: np.ndarray, path: Path) -> None:
    """Raise when ``label`` holds a value outside the sorted array ``valid``."""
    present = np.unique(label)
    unexpected = present[~np.isin(present, valid)]
    if unexpected.size:
        raise ValueError(
            f"{path} holds label values {unexpected[:10].tolist()} that this dataset does not "
            "define; is it the right download?"
        )


def _save_atomic(image: Image.Image, path: Path, image_format: str, **params) -> None:
    """Write to a hidden temporary file, then rename: an output that exists is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=image_format, **params)
    os.replace(tmp, path)


def write_png_label(label: np.ndarray, path: Path) -> None:
    """8-bit single-channel PNG (PIL mode "L")."""
    if label.dtype != np.uint8:
        raise TypeError(f"PNG labels are uint8, got {label.dtype} for {path}")
    _save_atomic(Image.fromarray(label), path, "PNG")


def write_tiff_label(label: np.ndarray, path: Path) -> None:
    """16-bit single-channel TIFF (PIL mode "I;16"), read back exactly by ``read_label``."""
    if label.dtype != np.uint16:
        raise TypeError(f"TIFF labels are uint16, got {label.dtype} for {path}")
    _save_atomic(Image.fromarray(label), path, "TIFF")


def write_jpeg(image: np.ndarray, path: Path, quality: int) -> None:
    _save_atomic(Image.fromarray(image), path, "JPEG", quality=quality)


# ---------------------------------------------------------------------------- conversion runs
@dataclass(frozen=True)
class Task:
    """One unit of work: ``sources`` are read, ``outputs`` written; ``name`` labels failures."""

    name: str
    sources: Tuple[Path, ...]
    outputs: Tuple[Path, ...]


@dataclass
class RunStats:
    written: int = 0
    already_done: int = 0
    failures: List[Tuple[str, str]] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)


Converter = Callable[[Task], Optional[Dict[str, int]]]


def _convert_guarded(convert: Converter, task: Task):
    """Run one task; errors come back as text so one bad file does not stop the others."""
    missing = [str(p) for p in task.sources if not p.is_file()]
    if missing:
        return task.name, None, f"missing source file(s): {', '.join(missing)}"
    try:
        return task.name, convert(task) or {}, None
    except Exception as e:  # noqa: BLE001 - reported per file in the summary
        return task.name, None, f"{type(e).__name__}: {e}"


def run_tasks(
    tasks: Sequence[Task], convert: Converter, workers: int, overwrite: bool, desc: str
) -> RunStats:
    """Convert every task whose outputs are not all present yet (all of them with ``overwrite``).

    ``convert`` must be picklable (a module-level function or a ``functools.partial`` of one)
    and returns optional counters (e.g. ``{"resized": 1}``) that are summed over the run.
    """
    stats = RunStats()
    todo = []
    for task in tasks:
        if not overwrite and all(p.is_file() for p in task.outputs):
            stats.already_done += 1
        else:
            todo.append(task)
    run_one = partial(_convert_guarded, convert)
    bar = dict(total=len(todo), desc=desc, unit="file", disable=None, file=sys.stderr)
    if workers <= 1 or len(todo) <= 1:
        results: Iterable = (run_one(task) for task in todo)
        _collect(tqdm(results, **bar), stats)
    else:
        with Pool(min(workers, len(todo))) as pool:
            _collect(tqdm(pool.imap_unordered(run_one, todo, _CHUNKSIZE), **bar), stats)
    stats.failures.sort()
    return stats


def _collect(results: Iterable, stats: RunStats) -> None:
    for name, counters, error in results:
        if error is None:
            stats.written += 1
            stats.counters.update(counters)
        else:
            stats.failures.append((name, error))


def count_files(folder: Path, suffix: str) -> int:
    """Files named ``*suffix`` in ``folder`` (hidden temporary files excluded); 0 if absent."""
    if not folder.is_dir():
        return 0
    return sum(
        1 for name in os.listdir(folder) if name.endswith(suffix) and not name.startswith(".")
    )


def image_size(path: Path) -> Tuple[int, int]:
    """(height, width) of an image or label file, from its header (the pixels are not decoded)."""
    with Image.open(path) as img:
        return img.height, img.width


def _pair_size_error(pair: Tuple[Path, Path]) -> Optional[str]:
    image, label = pair
    if not (image.is_file() and label.is_file()):
        return None  # missing files are reported by the counts
    try:
        (ih, iw), (lh, lw) = image_size(image), image_size(label)
    except Exception as e:  # noqa: BLE001 - reported per pair
        return f"{image} / {label}: unreadable ({type(e).__name__}: {e})"
    if (ih, iw) != (lh, lw):
        return f"image {image} is {ih}x{iw} but its label {label} is {lh}x{lw}"
    return None


def check_pair_sizes(summary: "Summary", label: str, pairs: Sequence[Tuple[Path, Path]],
                     workers: int = 1) -> int:
    """Record a problem for every (image, label) pair whose sizes differ (an evaluation would
    stop at the first one); returns how many differ. Pairs with a missing file are skipped."""
    if workers > 1 and len(pairs) > 64:
        with Pool(min(workers, 8)) as pool:
            errors = [e for e in pool.imap(_pair_size_error, pairs, 64) if e]
    else:
        errors = [e for e in map(_pair_size_error, pairs) if e]
    if errors:
        summary.problem(f"{label}: {len(errors)} of {len(pairs)} image/label pairs differ in size "
                        "(images and labels from different downloads or versions?); re-download "
                        "and convert them (--overwrite):")
        for text in errors[:_MAX_LISTED]:
            summary.problem(f"  {text}")
        if len(errors) > _MAX_LISTED:
            summary.problem(f"  ... and {len(errors) - _MAX_LISTED} more pairs")
    else:
        summary.note(f"{label}: image and label sizes match ({len(pairs)} pairs)")
    return len(errors)


def read_id_list(path: Path) -> List[str]:
    """Image ids, one per line (VOC ``ImageSets`` files); blank lines ignored."""
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


# ---------------------------------------------------------------------------- summary
class Summary:
    """Collects what a script did and checked, prints it, and gives the exit status."""

    def __init__(self, script: str, root: Path):
        self.script, self.root = script, root
        self.lines: List[str] = []
        self.problems: List[str] = []

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def note(self, text: str) -> None:
        self.lines.append(text)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def require(self, paths: Sequence[Path], download: str) -> bool:
        """Record a problem for each missing source path; True when all exist."""
        ok = True
        for path in paths:
            if not path.exists():
                ok = False
                self.problem(f"missing {path}: get {download}")
        return ok

    def run(self, label: str, stats: RunStats) -> None:
        extra = "".join(f", {v} {k}" for k, v in sorted(stats.counters.items()))
        self.note(
            f"{label}: {stats.written} written, {stats.already_done} already done, "
            f"{len(stats.failures)} failed{extra}"
        )
        for name, error in stats.failures[:_MAX_LISTED]:
            self.problem(f"{label}: {name}: {error}")
        if len(stats.failures) > _MAX_LISTED:
            self.problem(f"{label}: {len(stats.failures) - _MAX_LISTED} more files failed")

    def check_count(self, label: str, found: int, expected: int, where: Path, key: str) -> None:
        status = "OK" if found == expected else "MISMATCH"
        self.note(f"{label}: {found} in {self._rel(where)} (expected {expected}) {status}")
        if found != expected:
            self.problem(
                f"{label}: {found} in {where}, expected {expected} (pass --expect "
                f"{key}={found} if you prepared a subset on purpose)"
            )

    def finish(self) -> int:
        """Print the summary; 0 when nothing is wrong, 1 otherwise."""
        print(f"\n=== {self.script} summary (dataset root: {self.root}) ===")
        for line in self.lines:
            print(f"  {line}")
        if self.problems:
            print(f"PROBLEMS ({len(self.problems)}):")
            for text in self.problems:
                print(f"  - {text}")
            return 1
        print("All checks passed.")
        return 0
