"""Safe extraction of adapter archives (inference.sidecar.extract)."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from inference.sidecar.errors import ApiError
from inference.sidecar.extract import adapter_root, archive_kind, extract_archive

CONFIG = json.dumps({"r": 8, "target_modules": ["q_proj", "v_proj"]}).encode()
WEIGHTS = b"\x00" * 1000


def make_tar(path: Path, members: Iterable[tuple[tarfile.TarInfo, bytes | None]],
             mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link_member(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def make_zip(path: Path, members: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _extract(archive: Path, tmp_path: Path, *, max_bytes: int = 10**6) -> Path:
    dest = tmp_path / "out"
    dest.mkdir()
    extract_archive(archive, dest, max_bytes=max_bytes)
    return dest


def _refused(archive: Path, tmp_path: Path, *, max_bytes: int = 10**6) -> ApiError:
    with pytest.raises(ApiError) as info:
        _extract(archive, tmp_path, max_bytes=max_bytes)
    return info.value


def _files_outside(tmp_path: Path, *allowed: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*")
            if p.is_file() and not any(p.is_relative_to(a) for a in allowed)]


def test_a_tar_gz_with_a_top_directory_extracts(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [
        file_member("sql/adapter_config.json", CONFIG),
        file_member("sql/adapter_model.safetensors", WEIGHTS),
    ])
    dest = _extract(archive, tmp_path)
    root = adapter_root(dest)
    assert root == dest / "sql"
    assert (root / "adapter_config.json").read_bytes() == CONFIG
    assert (root / "adapter_model.safetensors").read_bytes() == WEIGHTS


def test_a_flat_zip_extracts(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG),
                                            ("weights/adapter_model.bin", WEIGHTS)])
    dest = _extract(archive, tmp_path)
    assert adapter_root(dest) == dest
    assert (dest / "weights" / "adapter_model.bin").read_bytes() == WEIGHTS


def test_a_plain_tar_extracts(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar", [file_member("adapter_config.json", CONFIG)],
                       mode="w")
    assert archive_kind(archive) == "tar"
    assert adapter_root(_extract(archive, tmp_path)).name == "out"


def test_the_kind_is_read_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "looks-like.tar.gz", [("adapter_config.json", CONFIG)])
    assert archive_kind(archive) == "zip"
    assert (_extract(archive, tmp_path) / "adapter_config.json").exists()


@pytest.mark.parametrize("content", [b"", b"not an archive at all", b"<html>404</html>" * 40])
def test_what_is_not_an_archive_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x").write_bytes(content)
    err = _refused(tmp_path / "x", tmp_path)
    assert (err.status, err.code) == (400, "bad_archive")


def test_a_truncated_tar_gz_is_refused(tmp_path: Path) -> None:
    whole = make_tar(tmp_path / "a.tar.gz", [file_member("adapter_config.json", CONFIG),
                                             file_member("w.bin", bytes(range(256)) * 400)])
    data = whole.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    err = _refused(tmp_path / "cut.tar.gz", tmp_path)
    assert (err.status, err.code) == (400, "bad_archive")


def test_a_corrupt_zip_is_refused(tmp_path: Path) -> None:
    whole = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG)])
    data = bytearray(whole.read_bytes())
    (tmp_path / "bad.zip").write_bytes(bytes(data[:40]))
    err = _refused(tmp_path / "bad.zip", tmp_path)
    assert (err.status, err.code) == (400, "bad_archive")


@pytest.mark.parametrize("name", ["/etc/cron.d/evil", "../evil", "sql/../../evil", "a\\..\\evil",
                                  "C:/evil"])
def test_unsafe_member_names_are_refused_before_anything_is_written(
    tmp_path: Path, name: str,
) -> None:
    for archive in (
        make_tar(tmp_path / "a.tar.gz", [file_member("adapter_config.json", CONFIG),
                                         file_member(name, b"x")]),
        make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG), (name, b"x")]),
    ):
        err = _refused(archive, tmp_path)
        assert (err.status, err.code) == (400, "bad_archive")
        assert name in err.message or repr(name) in err.message
        assert not (tmp_path / "out" / "adapter_config.json").exists()
        assert _files_outside(tmp_path, tmp_path / "a.tar.gz", tmp_path / "a.zip") == []
        (tmp_path / "out").rmdir()


@pytest.mark.parametrize(("target", "hard"), [("/etc/passwd", False), ("../../x", False),
                                              ("adapter_config.json", False),
                                              ("adapter_config.json", True)])
def test_links_in_tar_archives_are_refused(tmp_path: Path, target: str, hard: bool) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [file_member("adapter_config.json", CONFIG),
                                               link_member("weights", target, hard=hard)])
    err = _refused(archive, tmp_path)
    assert (err.status, err.code) == (400, "bad_archive")
    assert "link" in err.message
    assert list((tmp_path / "out").iterdir()) == []


def test_symlinks_in_zip_archives_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("weights")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "a.zip", [("adapter_config.json", CONFIG),
                                            (link, b"/etc/passwd")])
    err = _refused(archive, tmp_path)
    assert (err.status, err.code) == (400, "bad_archive")
    assert list((tmp_path / "out").iterdir()) == []


def test_device_members_are_refused(tmp_path: Path) -> None:
    dev = tarfile.TarInfo("null")
    dev.type = tarfile.CHRTYPE
    archive = make_tar(tmp_path / "a.tar.gz", [file_member("adapter_config.json", CONFIG),
                                               (dev, None)])
    assert _refused(archive, tmp_path).code == "bad_archive"


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archives_extracting_past_the_cap_are_refused(tmp_path: Path, kind: str) -> None:
    big = b"\x00" * 50_000  # compresses to almost nothing: a small archive bomb
    members = [("adapter_config.json", CONFIG), ("w.bin", big)]
    if kind == "zip":
        archive = make_zip(tmp_path / "a.zip", members)
    else:
        archive = make_tar(tmp_path / "a.tar.gz", [file_member(n, d) for n, d in members])
    assert archive.stat().st_size < 10_000
    err = _refused(archive, tmp_path, max_bytes=20_000)
    assert (err.status, err.code) == (413, "archive_too_large")
    assert list((tmp_path / "out").iterdir()) == []


def test_an_archive_without_an_adapter_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [file_member("a/adapter_config.json", CONFIG),
                                               file_member("b/adapter_config.json", CONFIG)])
    dest = _extract(archive, tmp_path)
    with pytest.raises(ApiError) as info:
        adapter_root(dest)
    assert (info.value.status, info.value.code) == (400, "not_an_adapter")
