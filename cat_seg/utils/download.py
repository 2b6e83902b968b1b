"""Weights named by a local path, an http(s) URL or a Hugging Face file, as one local file.

    fetch_weights("output/run/model_final.pth")                          # a file: checked, kept
    fetch_weights("https://host/model_base.pth", sha256="9f2c...")       # downloaded once, cached
    fetch_weights("hf://hamacojr/CAT-Seg/model_base.pth")                # Hugging Face, branch main
    fetch_weights("hf://hamacojr/CAT-Seg@v1/model_base.pth")             # ... at a revision
    fetch_weights("hf://spaces/hamacojr/CAT-Seg-weights/model_base.pth") # a Space's file

(CAT-Seg's official CVPR 2024 checkpoints are files of the Space ``hamacojr/CAT-Seg-weights``;
README, "Model zoo".)

A download streams into ``<name>.part.<pid>`` beside its cache entry, with a progress bar
(tqdm, on stderr), and is renamed to its final name only once every byte the server announced
has arrived; an interrupted one leaves no file that could pass for complete. Its sha256 is
computed, logged and written to ``<name>.sha256``; a cached file is used again without a new
download, after a check against ``sha256`` when one is given (else against the recorded one: a
cached file changed since, e.g. cut short by a full disk, is downloaded again). A wrong checksum
stops with both values and removes the file, so the next call downloads it again.

The cache is ``$AHS_SEG_CACHE``, else ``$XDG_CACHE_HOME/ahs-seg``, else ``~/.cache/ahs-seg``;
entries are ``<cache>/<host>/<path of the URL>``, so the cache reads like the sources.
"""
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from .paths import file_problem, not_a_folder, resolve_repo_path

logger = logging.getLogger(__name__)

CACHE_ENV = "AHS_SEG_CACHE"
HF_SCHEME = "hf://"
HF_ENDPOINT = "https://huggingface.co"
_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DownloadError(OSError):
    """A download that failed or came back incomplete (the message says what to do)."""


class ChecksumError(DownloadError):
    """A file whose sha256 is not the one expected."""


def cache_dir() -> str:
    """Where downloads are kept (see the module docstring)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ahs-seg")


def check_cache_dir(root: Optional[str] = None) -> str:
    """The cache folder (``root``, else :func:`cache_dir`) when it is a folder or can be made;
    ``NotADirectoryError`` with one line naming it, the variable it came from and the fix when
    it or a folder on its way is a file."""
    root = root or cache_dir()
    problem = not_a_folder(root)
    if problem:
        source = (f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else
                  "$XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "~/.cache")
        raise NotADirectoryError(f"the download cache {root} ({source}){problem}; set "
                                 f"{CACHE_ENV} to a folder for the downloads")
    return root


# Hugging Face repositories other than models are named with their kind first.
HF_REPO_KINDS = ("spaces/", "datasets/")


def hf_url(repo_id: str, filename: str, revision: str = "main") -> str:
    """The download URL of ``filename`` in the Hugging Face repository ``repo_id`` at
    ``revision`` (a branch, tag or commit): ``owner/name`` for a model repository,
    ``spaces/owner/name`` or ``datasets/owner/name`` for a Space or a dataset."""
    kind = next((k for k in HF_REPO_KINDS if repo_id.startswith(k)), "")
    name = repo_id[len(kind):]
    if name.count("/") != 1 or not all(name.split("/")):
        raise ValueError(f"Hugging Face repository {repo_id!r} is not of the form owner/name "
                         "(spaces/owner/name for a Space)")
    if not filename:
        raise ValueError(f"no file named in the Hugging Face repository {repo_id}")
    quoted = urllib.parse.quote(filename.lstrip("/"))
    return (f"{HF_ENDPOINT}/{kind}{name}/resolve/{urllib.parse.quote(revision, safe='')}/"
            f"{quoted}")


def source_url(source: str) -> Optional[str]:
    """The URL ``source`` names (``http(s)://...``, ``hf://[spaces/]owner/name[@revision]/file``),
    or None for a local path."""
    if source.startswith(HF_SCHEME):
        path = source[len(HF_SCHEME):]
        kind = next((k for k in HF_REPO_KINDS if path.startswith(k)), "")
        parts = path[len(kind):].split("/", 2)
        if len(parts) < 3 or not all(parts):
            raise ValueError(f"{source!r}: expected hf://owner/name/file (optionally "
                             "hf://owner/name@revision/file, hf://spaces/owner/name/file)")
        name, _, revision = parts[1].partition("@")
        return hf_url(f"{kind}{parts[0]}/{name}", parts[2], revision or "main")
    if re.match(r"https?://", source):
        return source
    if "://" in source:
        raise ValueError(f"{source!r}: only local files, http(s):// URLs and hf://owner/name/file "
                         "are understood")
    return None


def cache_path(url: str, root: Optional[str] = None) -> str:
    """The cache entry of ``url``: ``<root>/<host>/<path>`` (a query string, if any, hashed
    into the name so two URLs never share an entry)."""
    parts = urllib.parse.urlsplit(url)
    segments = [urllib.parse.unquote(s) for s in parts.path.split("/") if s not in ("", ".", "..")]
    if not segments:
        raise ValueError(f"{url!r} names no file")
    if parts.query:
        digest = hashlib.sha256(parts.query.encode()).hexdigest()[:12]
        segments[-1] = f"{segments[-1]}.{digest}"
    return os.path.join(root or cache_dir(), parts.netloc.replace(":", "_"), *segments)


def sha256_of(path: str) -> str:
    """The sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_sha256(sha256: Optional[str]) -> Optional[str]:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _HEX64.fullmatch(value):
        raise ValueError(f"--sha256 {sha256!r} is not a sha256 (64 hexadecimal digits)")
    return value


def _recorded_sha256(record: str) -> Optional[str]:
    """The sha256 written beside a cached download, None if there is none."""
    try:
        with open(record) as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return None


def file_sha256(path: str) -> str:
    """The sha256 of ``path``: the one recorded at its download when it is a cached file
    unchanged since (same check as :func:`fetch_weights`'s), else computed."""
    recorded = _recorded_sha256(path + ".sha256")
    return recorded if recorded and in_cache(path) else sha256_of(path)


def in_cache(path: str, root: Optional[str] = None) -> bool:
    """Whether ``path`` is a file of the download cache."""
    cache = os.path.realpath(root or cache_dir())
    return os.path.realpath(path).startswith(cache + os.sep)


def forget(path: str) -> None:
    """Remove a cached download and its recorded sha256."""
    for name in (path, path + ".sha256"):
        if os.path.exists(name):
            os.remove(name)


def verify_sha256(path: str, sha256: Optional[str], *, what: str) -> str:
    """The file's sha256; raises :class:`ChecksumError` when ``sha256`` is given and differs."""
    actual = sha256_of(path)
    if sha256 is not None and actual != sha256:
        raise ChecksumError(f"{what} has sha256 {actual}, not the expected {sha256}: the file is "
                            "not the one the checksum describes (a changed upload, a corrupt "
                            "copy or a wrong --sha256); check the source and the checksum")
    return actual


def download(url: str, destination: str, *, progress: bool = True, timeout: float = 60.0) -> None:
    """Stream ``url`` into ``destination`` through a temporary name; raises
    :class:`DownloadError` (with the fix) when the server fails or the body is shorter than
    its ``Content-Length``."""
    from tqdm import tqdm

    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    partial = f"{destination}.part.{os.getpid()}"
    received, expected = 0, None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with open(partial, "wb") as out, tqdm(
                    total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=os.path.basename(destination), disable=not progress,
                    leave=False) as bar:
                while True:
                    try:
                        block = response.read(_CHUNK)
                    except http.client.IncompleteRead as error:
                        received += len(error.partial)
                        break
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
        if expected is not None and received != expected:
            raise DownloadError(f"download of {url} stopped after {received} of {expected} bytes "
                                "(the connection closed early); run the command again")
        os.replace(partial, destination)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: the server answered {error.code} {error.reason}; check the "
                            "address (for Hugging Face: the repository id, file name and "
                            "revision)") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"cannot download {url} ({reason}); check the network, or download "
                            "the file by other means and pass its local path") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def fetch_weights(source: str, sha256: Optional[str] = None, *, cache: Optional[str] = None,
                  progress: bool = True) -> str:
    """The local path of the weights ``source`` names: a local file (a shipped
    ``pretrained/...`` is found from any folder), an ``http(s)://`` URL or
    ``hf://owner/name[@revision]/file``, downloaded once into the cache (``cache``, default
    :func:`cache_dir`). With ``sha256`` (hex) the file is checked against it.

    Raises ``FileNotFoundError`` for a missing local file, :class:`DownloadError` for a failed
    or incomplete download and :class:`ChecksumError` for a wrong checksum, each with a
    one-line message that names the file and the fix.
    """
    expected = _expected_sha256(sha256)
    url = source_url(source)
    if url is None:
        path = resolve_repo_path(source)
        problem = file_problem(path)
        if problem:
            raise FileNotFoundError(f"weights file {source} {problem}; pass a local file, "
                                    "an http(s):// URL or hf://owner/name/file")
        if expected is not None:
            verify_sha256(path, expected, what=path)
        return path
    check_cache_dir(cache)
    path = cache_path(url, cache)
    record = path + ".sha256"
    if os.path.isfile(path):
        if expected is not None:
            try:
                verify_sha256(path, expected, what=f"the cached {path}")
            except ChecksumError:
                os.remove(path)
                raise
            logger.info("using the cached %s (downloaded from %s)", path, url)
            return path
        if _recorded_sha256(record) in (None, sha256_of(path)):
            logger.info("using the cached %s (downloaded from %s)", path, url)
            return path
        logger.warning("the cached %s changed since its download (sha256 differs from %s); "
                       "downloading it again", path, record)
        os.remove(path)
    logger.info("downloading %s -> %s", url, path)
    download(url, path, progress=progress)
    try:
        actual = verify_sha256(path, expected, what=f"the download of {url}")
    except ChecksumError:
        os.remove(path)
        raise
    with open(record, "w") as f:
        f.write(f"{actual}  {os.path.basename(path)}\n")
    logger.info("sha256 %s  %s (%d bytes)", actual, path, os.path.getsize(path))
    return path
