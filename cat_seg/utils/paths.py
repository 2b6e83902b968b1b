"""Checks on paths that entry points run before any work (no model is built for nothing)."""
import os
import tempfile
from typing import Optional


def file_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be read as a file ("does not exist", "is a folder, not a file", "is not
    a regular file"), or None when it is one: the phrase of every such message."""
    if os.path.isfile(path):
        return None
    if os.path.isdir(path):
        return "is a folder, not a file"
    return "is not a regular file" if os.path.exists(path) else "does not exist"


def folder_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be read as a folder ("does not exist", "is a file, not a folder"), or
    None when it is one."""
    if os.path.isdir(path):
        return None
    return "is a file, not a folder" if os.path.exists(path) else "does not exist"


def nearest_existing(path: str) -> str:
    """``path`` itself or its nearest parent that exists: the part of a path to be created that
    decides whether it can be ("" when no part of a relative path exists)."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path.rstrip(os.sep))
        if parent == path:
            break
        path = parent
    return path


def not_a_folder(path: str) -> Optional[str]:
    """Why ``path`` cannot be (or become) a folder, or None: " is a file, not a folder" when it
    is a file, " cannot be created: its part NAME is a file, not a folder" when a folder on its
    way is one (named by its part, so the message does not say the path twice)."""
    existing = nearest_existing(os.path.abspath(path))
    if not os.path.exists(existing) or os.path.isdir(existing):
        return None
    where = ("" if existing == os.path.abspath(path) else
             f" cannot be created: its part {os.path.basename(existing)}")
    return f"{where} is a file, not a folder"


def require_file(path: str, what: str, fix: str) -> str:
    """``path`` when it is a file (to be read); else ``FileNotFoundError`` /
    ``IsADirectoryError`` with one line: ``{what} {path}`` and :func:`file_problem`, then ``fix``
    (what to give instead)."""
    problem = file_problem(path)
    if problem is None:
        return path
    error = IsADirectoryError if os.path.isdir(path) else FileNotFoundError
    raise error(f"{what} {path} {problem}; {fix}")


def require_folder(path: str, what: str, fix: str) -> str:
    """``path`` when it is a folder (to be read); else ``FileNotFoundError`` /
    ``NotADirectoryError`` with one line naming it, :func:`folder_problem` and ``fix``."""
    problem = folder_problem(path)
    if problem is None:
        return path
    error = NotADirectoryError if os.path.exists(path) else FileNotFoundError
    raise error(f"{what} {path} {problem}; {fix}")


def check_output_file(path: str, what: str) -> str:
    """Before any work: ``path`` can become a file (it is not a folder, and no parent on its way
    is a file). Raises ``OSError`` with one line naming it and the fix; returns ``path``. The
    missing parent folders are made when the file is written."""
    if not path:
        raise OSError(f"the {what} is empty; give a file name")
    if os.path.isdir(path):
        raise IsADirectoryError(f"the {what} {path} is a folder, not a file; give a file name "
                                f"(e.g. {os.path.join(path, 'out')}...)")
    parent = nearest_existing(os.path.dirname(os.path.abspath(path)))
    if parent and not os.path.isdir(parent):
        raise NotADirectoryError(f"the {what} {path} cannot be created: {parent} is a file, not "
                                 "a folder; choose another path")
    return path


def check_output_dir(path: str, what: str = "output folder") -> str:
    """Create ``path`` (and its parents) and make sure files can be written in it.

    Raises ``OSError`` with one line naming the folder, the reason (a parent is a file, no
    permission, read-only disk...) and the fix. Returns ``path``.
    """
    if not path:
        raise OSError(f"the {what} is empty; give a folder to write into")
    # "afile/" does not exist for os.path (ENOTDIR): look at the path without its trailing slash.
    bare = path.rstrip(os.sep) or os.sep
    if os.path.exists(bare) and not os.path.isdir(bare):
        raise OSError(f"the {what} {path} is a file, not a folder; choose another path or "
                      "remove that file")
    parent = nearest_existing(bare)
    if parent and not os.path.isdir(parent):
        raise OSError(f"the {what} {path} cannot be created: {parent} is a file, not a folder; "
                      "choose another path")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OSError(f"the {what} {path} cannot be created or written ({reason}); choose a "
                      "folder you can write to (check its permissions and free space)") from None
    return path


# ------------------------------------------------------------------ where shipped files are
#
# A command may start in any folder. Paths the user types (``--config-file my.yaml``) mean what
# they mean in the shell: relative to the current folder. The files this project ships
# (``configs/...``, ``pretrained/...``, named on a command line or inside a YAML, as in
# ``CLIP_WEIGHTS: "pretrained/ahs_tiny16_synthetic.pt"``) are found in the repository when the
# current folder has no such file. A YAML's ``_BASE_`` is relative to that YAML (detectron2), so
# a resolved config finds its bases too.

def repository_root() -> str:
    """The folder that holds this package (the repository checkout of an editable install:
    ``configs/``, ``pretrained/``, ``datasets/``, ``tools/``)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_repo_path(path: str) -> str:
    """``path`` as the user meant it: unchanged when it exists from the current folder (or is
    absolute, empty or a URL); else the repository's file of that relative name when there is one
    (``configs/vitb_384_ahs.yaml`` from any folder); else unchanged, so that the caller's "does
    not exist" message names what was typed."""
    if not path or "://" in path:
        return path
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded) or os.path.exists(expanded):
        return expanded
    shipped = os.path.join(repository_root(), expanded)
    return shipped if os.path.exists(shipped) else path


def default_dataset_root() -> str:
    """The datasets root when ``$DETECTRON2_DATASETS`` is unset: ``./datasets`` when the current
    folder has one (detectron2's and CAT-Seg's convention, unchanged), else the repository's
    ``datasets/`` folder, so that the built-in synthetic dataset is found (or generated) in the
    same place whichever folder a command starts from."""
    if os.path.isdir("datasets"):
        return "datasets"
    return os.path.join(repository_root(), "datasets")
