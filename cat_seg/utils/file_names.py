"""File names made from what a user typed or named: image file names (the demo's pictures,
eval's ``vis/``) and class names (the demo's probability maps).

Such a name must be a valid file name on every common file system, and two inputs must never
share one (the second picture would silently replace the first):

* characters no file system or shell handles well (``/ \\ : * ? " < > |``, control characters
  such as NUL and newline) become ``_``; a leading or trailing dot or space is dropped (a
  leading dot hides the file, Windows refuses a trailing one); letters of any script are kept;
* a name longer than the room left (the limit is 255 bytes per name on ext4 and APFS; what the
  caller appends is counted) is cut at a character boundary and ends with ``~`` and 8 hex digits
  of the whole name's SHA-1, so two long names with the same beginning stay apart;
* :func:`unique_names` gives the second of two equal names ``_2``, the third ``_3``, ...;
  names that differ only in case count as equal (macOS and Windows disks keep one of them).
"""
import hashlib
import re
import unicodedata
from typing import Iterable, List, Optional, Set

# Bytes in one file name (ext4, APFS, ZFS; NTFS counts 255 UTF-16 units).
MAX_NAME_BYTES = 255
# (Lone surrogates stand for the bytes of a name that is not UTF-8: not writable as such.)
_AWKWARD = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|\ud800-\udfff]+')
# Names Windows reserves for devices, whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
             *(f"lpt{i}" for i in range(1, 10))}


def _cut(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def safe_name(text: str, max_bytes: int = 200, fallback: str = "file") -> str:
    """``text`` as one valid file name of at most ``max_bytes`` UTF-8 bytes (see the module
    doc); ``fallback`` when nothing of it is left."""
    name = unicodedata.normalize("NFC", str(text))
    name = _AWKWARD.sub("_", name).strip(". ")
    if not name:
        name = fallback
    if name.split(".")[0].lower() in _RESERVED:
        name = "_" + name
    if len(name.encode("utf-8")) > max_bytes:
        digest = hashlib.sha1(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = _cut(name, max_bytes - 9).rstrip(". ") + "~" + digest
    return name


def unique_names(texts: Iterable[str], max_bytes: int = 200, fallback: str = "file",
                 taken: Optional[Set[str]] = None) -> List[str]:
    """:func:`safe_name` of each of ``texts``, made distinct: a name already given (ignoring
    case), or in ``taken`` (case-folded names; updated), gets ``_2``, ``_3``, ...; room for the
    suffix is kept within ``max_bytes``."""
    taken = set() if taken is None else taken
    names = []
    for text in texts:
        base = safe_name(text, max_bytes - 6, fallback)
        name, count = base, 1
        while name.casefold() in taken:
            count += 1
            name = f"{base}_{count}"
        taken.add(name.casefold())
        names.append(name)
    return names
