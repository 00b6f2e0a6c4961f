"""Safe extraction of adapter archives (.tar.gz, .tar, .zip), and finding the adapter.

The kind of archive is read from its first bytes, not its name. Every member is
checked before anything is written: no absolute names, no ``..`` component, no
links (an adapter is plain files), no devices, and the total size under a cap.
tar members are then extracted with tarfile's ``filter="data"`` as a second guard;
zip members are copied one by one, counting the bytes actually written.

Callers extract into a fresh temporary folder and move the result into place with
one rename, so a failure here never leaves a half-extracted adapter in the cache.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .errors import ApiError
from .sources import ADAPTER_CONFIG

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_COPY_CHUNK = 1 << 20


def _bad(message: str) -> ApiError:
    return ApiError(400, f"bad adapter archive: {message}", code="bad_archive", param="source")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the archive extracts to more than {limit} bytes "
                    "(--max-extracted-bytes)", code="archive_too_large", param="source")


def check_member_name(name: str) -> PurePosixPath:
    """The member's relative path; ApiError when it is absolute or climbs out."""
    if "\\" in name:
        raise _bad(f"member {name!r} has a backslash in its name")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise _bad(f"member {name!r} has an absolute path")
    if ".." in path.parts:
        raise _bad(f"member {name!r} has a '..' component")
    if path.parts and ":" in path.parts[0]:
        raise _bad(f"member {name!r} names a drive")
    return path


def archive_kind(path: Path) -> str:
    """``tar.gz``, ``tar`` or ``zip``, from the file's first bytes."""
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith(_GZIP_MAGIC):
        return "tar.gz"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    raise _bad("it is neither a .tar.gz nor a .zip archive")


def _extract_tar(archive: Path, dest: Path, *, max_bytes: int, mode: str) -> None:
    try:
        with tarfile.open(archive, mode) as tar:  # type: ignore[call-overload]
            members = tar.getmembers()
            total = 0
            for m in members:
                check_member_name(m.name)
                if m.issym() or m.islnk():
                    raise _bad(f"member {m.name!r} is a link; an adapter archive holds "
                               "only files and directories")
                if not (m.isfile() or m.isdir()):
                    raise _bad(f"member {m.name!r} is not a file or a directory")
                total += m.size
                if total > max_bytes:
                    raise _too_large(max_bytes)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _bad(f"{type(exc).__name__}: {exc}") from None


def _extract_zip(archive: Path, dest: Path, *, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            declared = 0
            for info in infos:
                check_member_name(info.filename)
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded
                if kind == stat.S_IFLNK:
                    raise _bad(f"member {info.filename!r} is a link; an adapter archive "
                               "holds only files and directories")
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise _bad(f"member {info.filename!r} is not a file or a directory")
                declared += info.file_size
                if declared > max_bytes:
                    raise _too_large(max_bytes)
            written = 0
            root = dest.resolve()
            for info in infos:
                target = (dest / info.filename).resolve()
                if not target.is_relative_to(root):  # belt and braces after the name check
                    raise _bad(f"member {info.filename!r} would land outside the folder")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    while chunk := src.read(_COPY_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:  # the headers understated the sizes
                            raise _too_large(max_bytes)
                        out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
            NotImplementedError, OSError) as exc:
        raise _bad(f"{type(exc).__name__}: {exc}") from None


def extract_archive(archive: Path, dest: Path, *, max_bytes: int) -> None:
    """Extract ``archive`` into the existing, empty folder ``dest``. ApiError (400 for a
    bad or unsafe archive, 413 past ``max_bytes``) on failure; ``dest`` may then hold
    some files, and the caller removes it."""
    kind = archive_kind(archive)
    if kind == "zip":
        _extract_zip(archive, dest, max_bytes=max_bytes)
    else:
        _extract_tar(archive, dest, max_bytes=max_bytes,
                     mode="r:gz" if kind == "tar.gz" else "r:")


def adapter_root(folder: Path) -> Path:
    """The adapter inside an extracted archive: the folder itself when it has
    ``adapter_config.json``, else its one top-level directory when that has it."""
    if (folder / ADAPTER_CONFIG).is_file():
        return folder
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / ADAPTER_CONFIG).is_file():
        return entries[0]
    raise ApiError(400, f"the archive holds no adapter: no {ADAPTER_CONFIG} at its top "
                   "level or in its one top-level directory", code="not_an_adapter",
                   param="source")


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it, if it is there."""
    shutil.rmtree(path, ignore_errors=True)
