"""A results folder holds one model's figures, says which model they are of, and whether the run
that wrote them finished.

An evaluation (eval_ahs.sh / tools/eval_benchmarks.py) and a training (train_net.py) write into an
output folder OUT:

- :func:`folder_lock` takes ``OUT/.lock`` with ``fcntl.flock``: a second run into the same folder
  stops with a message naming the run that holds it. The kernel drops the lock when its process
  ends, however it ends (a killed run never leaves a stale lock behind); the file itself stays.
- :func:`retire_previous_results` moves the results of an earlier evaluation (results.json,
  results.md, results.partial.json, the per-class CSVs, vis/, config_eval.yaml,
  eval_results.json, run_status.json)
  into ``OUT/previous/<UTC time>/`` before a new evaluation writes anything, so a run that is
  killed half-way never leaves another model's figures looking current. Training files
  (checkpoints, config.yaml, log.txt, metrics.json) are not results and stay: an evaluation
  usually writes into its training run's folder. A training that starts from scratch
  (``retire_previous_run``) moves the earlier run's training files as well, so its checkpoints,
  config and logs never sit beside another model's.
- :class:`RunRecord` is what every results file states about its run: the weights file with its
  size, modification time and SHA-256 (of the whole file: a few seconds for a ViT-L checkpoint,
  nothing beside an evaluation), the config file, the overrides and the full config's file, the
  start date, the date the file was written and whether the run was complete then.
  ``OUT/run_status.json`` says "running" until the run ends ("complete" or "interrupted"); a
  folder whose status says "running" while nobody holds its lock was left by a killed run.
- :func:`write_atomic` writes a file under a temporary name in the same folder and renames it
  over the target, so a reader sees the old file or the new one, never half of one.
"""
import datetime
import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import socket
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

__all__ = ["FolderInUseError", "LOCK_NAME", "PREVIOUS_DIR", "RESULT_FILES", "RunRecord",
           "STATUS_NAME", "TRAINING_FILES", "file_fingerprint", "folder_lock", "read_status",
           "retire_previous_results", "retire_previous_run", "utc_now", "write_atomic",
           "write_status"]

LOCK_NAME = ".lock"
STATUS_NAME = "run_status.json"
PREVIOUS_DIR = "previous"
# What an evaluation writes (glob patterns relative to the folder); moved away by a new one.
RESULT_FILES = ("results.json", "results.md", "results.partial.json", "sem_seg_per_class_*.csv",
                "vis", "config_eval.yaml", "eval_results.json", STATUS_NAME)
# What a training run writes (train_net.py, detectron2's writers and hooks).
TRAINING_FILES = ("model_*.pth", "last_checkpoint", "config.yaml", "config_history.yaml",
                  "log.txt*", "metrics.json", "events.out.tfevents.*", "inference")


class FolderInUseError(OSError):
    """Another live process holds the output folder's lock (the message names it)."""


def utc_now() -> str:
    """The current time, ISO 8601 in UTC to the second (e.g. 2026-12-04T10:42:07Z)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.tmp.{os.getpid()}")
    try:
        with open(temporary, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def file_fingerprint(path: str, chunk: int = 1 << 22) -> Dict[str, object]:
    """``{"file", "size", "modified", "sha256"}`` of a file: its absolute path, size in bytes,
    modification time (UTC) and the SHA-256 of its whole content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    stat = os.stat(path)
    modified = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc)
    return {"file": os.path.abspath(path), "size": stat.st_size,
            "modified": modified.strftime("%Y-%m-%dT%H:%M:%SZ"), "sha256": digest.hexdigest()}


@dataclass
class RunRecord:
    """What a results file says about the run that wrote it (see the module doc).

    ``weights``: :func:`file_fingerprint` of the weights; ``config_file``: absolute path of the
    config given; ``opts``: the KEY VALUE overrides; ``config_dump``: the file holding the full
    config the run used (relative to the folder); ``planned``: what the run set out to produce
    (benchmark names); ``started``: UTC date; ``command``: the command line; ``host``.
    """
    weights: Dict[str, object]
    config_file: str
    opts: List[str] = field(default_factory=list)
    config_dump: str = "config_eval.yaml"
    planned: List[str] = field(default_factory=list)
    started: str = field(default_factory=utc_now)
    command: str = field(default_factory=lambda: " ".join(sys.argv))
    host: str = field(default_factory=socket.gethostname)

    def stamp(self, done: Sequence[str]) -> Dict[str, object]:
        """The record as written into a results file now: ``done`` of ``planned`` are finished;
        ``complete`` is True only when all are."""
        return dict(asdict(self), written=utc_now(), done=list(done),
                    complete=set(self.planned) <= set(done))

    def lines(self, done: Sequence[str]) -> List[str]:
        """The record as text lines (for Markdown and for ``#`` comments in CSV files)."""
        w = self.weights
        opts = " ".join(self.opts) or "none"
        if set(self.planned) <= set(done):
            state = f"COMPLETE ({len(done)} of {len(self.planned)}: {', '.join(done)})"
        else:
            state = (f"INCOMPLETE: {len(done)} of {len(self.planned)} done when this was written "
                     f"({', '.join(done) or 'none'}); if the run is not going any more, it was "
                     "stopped before the end and these figures are partial")
        return [f"weights: {w['file']} ({w['size']} bytes, modified {w['modified']}, "
                f"sha256 {w['sha256']})",
                f"config: {self.config_file}; overrides: {opts}; full config: {self.config_dump}",
                f"run: started {self.started} on {self.host}, this file written {utc_now()}",
                f"state: {state}"]


def write_status(folder: str, record: Optional[RunRecord], state: str, **extra) -> None:
    """``OUT/run_status.json``: ``state`` ("running", "complete", "interrupted", "failed"), the
    process id, the run record and ``extra`` fields."""
    status = dict(state=state, pid=os.getpid(), updated=utc_now(), **extra)
    if record is not None:
        status["run"] = asdict(record)
    write_atomic(os.path.join(folder, STATUS_NAME), json.dumps(status, indent=2) + "\n")


def read_status(folder: str) -> Optional[dict]:
    """``OUT/run_status.json`` as a dict, or None when absent or unreadable."""
    try:
        with open(os.path.join(folder, STATUS_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _lock_holder(handle) -> str:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except ValueError:
        holder = {}
    if not holder:
        return "another run"
    return (f"{holder.get('what', 'run')} by process {holder.get('pid')} since "
            f"{holder.get('started')}: {holder.get('command')}")


@contextmanager
def folder_lock(folder: str, what: str = "run") -> Iterator[None]:
    """Hold ``folder/.lock`` (``fcntl.flock``, exclusive) for the duration; another holder ->
    :class:`FolderInUseError` naming it (``what`` it runs, its process, start and command, which
    the holder writes into the file). The lock dies with the process that holds it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise FolderInUseError(
                f"the output folder {folder} is in use ({_lock_holder(handle)}); wait for that "
                f"to finish, or write this {what} into another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"what": what, "pid": os.getpid(), "started": utc_now(),
                                 "command": " ".join(sys.argv)}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the last descriptor releases the lock


def retire_previous_results(folder: str, patterns: Sequence[str] = RESULT_FILES) -> Optional[str]:
    """Move the results an earlier evaluation left in ``folder`` (files matching ``patterns``)
    into ``folder/previous/<UTC time>[-incomplete]/`` (``-incomplete`` when its run_status.json
    says it never finished). Returns the new folder, or None when there was nothing to move.
    Call it with :func:`folder_lock` held."""
    found = sorted({path for pattern in patterns
                    for path in glob.glob(os.path.join(folder, pattern))})
    if not found:
        return None
    status = read_status(folder)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffix = "" if status is None or status.get("state") == "complete" else "-incomplete"
    target = os.path.join(folder, PREVIOUS_DIR, stamp + suffix)
    n = 1
    while os.path.exists(target):
        n += 1
        target = os.path.join(folder, PREVIOUS_DIR, f"{stamp}{suffix}-{n}")
    os.makedirs(target)
    for path in found:
        shutil.move(path, os.path.join(target, os.path.basename(path)))
    return target


def retire_previous_run(folder: str) -> Optional[str]:
    """:func:`retire_previous_results` for a training that starts from scratch in ``folder``:
    the earlier run's checkpoints, config, logs and results all move (renames, no copy)."""
    return retire_previous_results(folder, RESULT_FILES + TRAINING_FILES)
