"""Checking adapter names, sha256 strings and sources (inference.sidecar.sources)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inference.sidecar.errors import ApiError
from inference.sidecar.sources import (
    ArchiveSource,
    FileSource,
    cache_path,
    check_name,
    check_sha256,
    parse_source,
)


def _adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    return folder


@pytest.fixture
def roots(tmp_path: Path) -> list[str]:
    root = tmp_path / "adapters"
    _adapter(root / "sql")
    return [str(root)]


def _refused(source: object, roots: list[str]) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_source(source, roots=roots)
    return info.value


def test_a_directory_inside_a_root_is_accepted(roots: list[str]) -> None:
    got = parse_source(f"file://{roots[0]}/sql", roots=roots)
    assert got == FileSource(Path(roots[0]).resolve() / "sql")
    assert parse_source(f"file://localhost{roots[0]}/sql", roots=roots) == got


def test_a_symlink_that_stays_inside_the_roots_is_accepted(roots: list[str]) -> None:
    os.symlink(Path(roots[0]) / "sql", Path(roots[0]) / "latest")
    got = parse_source(f"file://{roots[0]}/latest", roots=roots)
    assert got == FileSource(Path(roots[0]).resolve() / "sql")


def test_percent_escapes_are_decoded(tmp_path: Path) -> None:
    root = tmp_path / "a root"
    _adapter(root / "x y")
    got = parse_source(f"file://{tmp_path}/a%20root/x%20y", roots=[str(root)])
    assert got == FileSource((root / "x y").resolve())


@pytest.mark.parametrize("source", ["s3://bucket/sql.tar.gz", "ftp://host/a.zip", "gs://x/y",
                                    "/just/a/path", "hf://org/adapter"])
def test_unknown_schemes_are_refused_naming_the_scheme(source: str, roots: list[str]) -> None:
    err = _refused(source, roots)
    assert (err.status, err.code, err.param) == (400, "unsupported_source_scheme", "source")
    scheme = repr(source.split("://", maxsplit=1)[0]) if "://" in source else "none"
    assert f"unsupported source scheme {scheme} in {source!r}" in err.message


def test_dot_dot_is_refused_even_when_it_lands_inside(roots: list[str]) -> None:
    err = _refused(f"file://{roots[0]}/sql/../sql", roots)
    assert (err.status, err.code) == (400, "path_traversal")
    err = _refused(f"file://{roots[0]}/../../etc", roots)
    assert (err.status, err.code) == (400, "path_traversal")
    err = _refused(f"file://{roots[0]}/%2e%2e/%2e%2e/etc", roots)  # escaped dots too
    assert (err.status, err.code) == (400, "path_traversal")


def test_a_symlink_leading_out_of_the_roots_is_refused(tmp_path: Path, roots: list[str]) -> None:
    outside = _adapter(tmp_path / "elsewhere" / "evil")
    os.symlink(outside, Path(roots[0]) / "evil")
    err = _refused(f"file://{roots[0]}/evil", roots)
    assert (err.status, err.code) == (403, "source_outside_roots")
    assert str(outside) in err.message


def test_a_directory_outside_the_roots_is_refused(tmp_path: Path, roots: list[str]) -> None:
    outside = _adapter(tmp_path / "outside")
    err = _refused(f"file://{outside}", roots)
    assert (err.status, err.code) == (403, "source_outside_roots")


def test_a_sibling_with_the_roots_name_as_prefix_is_outside(tmp_path: Path,
                                                            roots: list[str]) -> None:
    sibling = _adapter(Path(roots[0] + "-evil") / "x")
    err = _refused(f"file://{sibling}", roots)
    assert err.code == "source_outside_roots"


def test_file_sources_are_off_without_roots(roots: list[str]) -> None:
    err = _refused(f"file://{roots[0]}/sql", [])
    assert (err.status, err.code) == (403, "source_outside_roots")
    assert "--adapter-roots" in err.message


@pytest.mark.parametrize(("suffix", "code"), [
    ("/missing", "source_not_found"),
    ("/sql/adapter_config.json", "not_an_adapter"),
])
def test_missing_or_non_adapter_paths_are_refused(suffix: str, code: str,
                                                  roots: list[str]) -> None:
    err = _refused(f"file://{roots[0]}{suffix}", roots)
    assert (err.status, err.code) == (400, code)


def test_a_directory_without_adapter_config_is_refused(roots: list[str]) -> None:
    (Path(roots[0]) / "empty").mkdir()
    err = _refused(f"file://{roots[0]}/empty", roots)
    assert (err.status, err.code) == (400, "not_an_adapter")


def test_file_urls_with_a_host_or_relative_path_are_refused(roots: list[str]) -> None:
    assert _refused(f"file://otherhost{roots[0]}/sql", roots).code == "invalid_source"
    assert _refused("file:sql", roots).code == "invalid_source"


@pytest.mark.parametrize("source", [None, "", 42, ["file:///x"]])
def test_a_missing_or_non_string_source_is_refused(source: object, roots: list[str]) -> None:
    err = _refused(source, roots)
    assert (err.status, err.code, err.param) == (400, "invalid_source", "source")


def test_http_and_https_urls_are_archives(roots: list[str]) -> None:
    assert parse_source("https://example.com/a.tar.gz", roots=roots) == \
        ArchiveSource("https://example.com/a.tar.gz")
    assert parse_source("HTTP://h:8080/a.zip?x=1", roots=[]) == \
        ArchiveSource("HTTP://h:8080/a.zip?x=1")
    assert _refused("http:///a.zip", roots).code == "invalid_source"


@pytest.mark.parametrize("name", ["sql", "sql-v2", "Org.adapter_3", "a" * 253])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", None, 7, "../x", "a/b", ".hidden", "-x", "a b",
                                  "a" * 254, "ü"])
def test_bad_names(name: object) -> None:
    with pytest.raises(ApiError) as info:
        check_name(name)
    assert (info.value.status, info.value.param) == (400, "name")


def test_sha256_strings() -> None:
    good = "AB" * 32
    assert check_sha256(good) == good.lower()
    assert check_sha256(None) is None
    for bad in ("ab" * 31, "zz" * 32, 12, ""):
        with pytest.raises(ApiError) as info:
            check_sha256(bad)
        assert (info.value.status, info.value.param) == (400, "sha256")


def test_cache_paths_are_per_name_and_per_source(tmp_path: Path) -> None:
    a = cache_path(tmp_path, "sql", "https://h/a.tar.gz", None)
    assert a.parent == tmp_path / "sql"
    assert a == cache_path(tmp_path, "sql", "https://h/a.tar.gz", None)
    assert a != cache_path(tmp_path, "sql", "https://h/b.tar.gz", None)
    assert a != cache_path(tmp_path, "sql", "https://h/a.tar.gz", "0" * 64)
