"""The sidecar's adapter API against a real sim engine (both as processes).

One sim and one sidecar serve the whole module (each test uses its own adapter
names); tests that need another configuration start their own.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers.procs import Proc, ProcessGroup
from tests.helpers.sidecar import start_sidecar
from tests.helpers.sim import FAST, start_sim
from tests.integration.inference_sidecar.conftest import (
    ArchiveServer,
    adapter_files,
    files_in,
    tar_gz,
    write_adapter,
    zip_bytes,
)

BASE = "base-model"
MAX_DOWNLOAD = 64 * 1024


@dataclass
class Stack:
    engine: Proc
    sidecar: Proc
    roots: Path
    cache: Path

    @property
    def url(self) -> str:
        assert self.sidecar.url is not None
        return self.sidecar.url

    def engine_adapters(self) -> dict[str, str | None]:
        body = httpx.get(f"{self.engine.url}/v1/models", timeout=10).json()
        return {m["id"]: m.get("root") for m in body["data"] if m.get("parent")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("sidecar-adapters")
    group = ProcessGroup(log_dir=work / "logs")
    try:
        engine = start_sim(group, name=BASE, extra_args=FAST)
        roots, cache = work / "roots", work / "cache"
        roots.mkdir()
        assert engine.url is not None
        sidecar = start_sidecar(group, engine_url=engine.url, extra_args=(
            "--adapter-roots", str(roots), "--cache-dir", str(cache),
            "--max-download-bytes", str(MAX_DOWNLOAD), "--max-extracted-bytes", "200000",
            "--max-body-bytes", "4096",
        ))
        yield Stack(engine, sidecar, roots, cache)
    finally:
        group.stop_all()


def _post(stack: Stack, body: object, **kw: object) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/adapters", json=body, timeout=30, **kw)  # type: ignore[arg-type]


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    err: dict[str, object] = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str)
    assert err["message"]
    return err


# --- loading and unloading ----------------------------------------------------


def test_file_adapter_load_is_idempotent_and_serves_then_unloads(stack: Stack) -> None:
    folder = write_adapter(stack.roots / "sql")
    source = f"file://{folder}"

    first = _post(stack, {"name": "sql", "source": source})
    assert first.status_code == 201, first.text
    assert first.json() == {"name": "sql", "base_model": BASE, "path": str(folder),
                            "source": source, "sha256": None, "status": "loaded"}
    again = _post(stack, {"name": "sql", "source": source})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "already_loaded"
    assert stack.engine_adapters() == {"sql": str(folder)}

    listed = httpx.get(f"{stack.url}/v1/adapters", timeout=10).json()
    assert listed == {"object": "list", "data": [
        {"name": "sql", "base_model": BASE, "path": str(folder), "source": source,
         "sha256": None}]}

    client = openai.OpenAI(base_url=f"{stack.engine.url}/v1", api_key="none")
    done = client.completions.create(model="sql", prompt="select", max_tokens=3)
    assert done.model == "sql"

    gone = httpx.delete(f"{stack.url}/v1/adapters/sql", timeout=10)
    assert (gone.status_code, gone.json()) == (200, {"name": "sql", "status": "unloaded"})
    gone_again = httpx.delete(f"{stack.url}/v1/adapters/sql", timeout=10)
    assert (gone_again.status_code, gone_again.json()) == (
        200, {"name": "sql", "status": "not_loaded"})
    assert stack.engine_adapters() == {}
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="sql", prompt="select", max_tokens=3)
    assert folder.is_dir()  # a file:// adapter is the user's: never removed


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archive_adapter_is_downloaded_checked_loaded_and_removed_on_unload(
    stack: Stack, archives: ArchiveServer, kind: str,
) -> None:
    data = (tar_gz(adapter_files("chat-v1/")) if kind == "tar.gz"
            else zip_bytes(adapter_files()))
    url = archives.add(f"/chat-{kind}", data)
    sha = hashlib.sha256(data).hexdigest()
    name = f"chat-{kind.replace('.', '')}"

    r = _post(stack, {"name": name, "source": url, "sha256": sha.upper()})
    assert r.status_code == 201, r.text
    body = r.json()
    path = Path(body["path"])
    assert (body["source"], body["sha256"], body["status"]) == (url, sha, "loaded")
    assert path.is_relative_to(stack.cache / name)
    assert (path / "adapter_config.json").read_bytes() == adapter_files()["adapter_config.json"]
    assert stack.engine_adapters()[name] == str(path)

    hits = archives.hits[f"/chat-{kind}"]
    again = _post(stack, {"name": name, "source": url, "sha256": sha})
    assert (again.status_code, again.json()["status"]) == (200, "already_loaded")
    assert archives.hits[f"/chat-{kind}"] == hits  # not downloaded again

    listed = httpx.get(f"{stack.url}/v1/adapters", timeout=10).json()["data"]
    assert {"name": name, "base_model": BASE, "path": str(path), "source": url,
            "sha256": sha} in listed

    assert httpx.delete(f"{stack.url}/v1/adapters/{name}", timeout=10).status_code == 200
    assert not (stack.cache / name).exists()
    assert files_in(stack.cache) == []


def _at_once(count: int, call: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    """``count`` calls released together from as many threads."""
    barrier = threading.Barrier(count)

    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            barrier.wait(10)
            return call(client)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_loads_of_one_adapter_are_serialised(
    stack: Stack, archives: ArchiveServer,
) -> None:
    url = archives.add("/busy.tar.gz", tar_gz(adapter_files()))
    answers = _at_once(8, lambda c: c.post(f"{stack.url}/v1/adapters",
                                           json={"name": "busy", "source": url}))
    codes = sorted(r.status_code for r in answers)
    # Unserialised, several would reach the engine, which refuses a second load (400).
    assert codes == [200] * 7 + [201], [r.text for r in answers]
    assert archives.hits["/busy.tar.gz"] == 1
    assert list(stack.engine_adapters()) == ["busy"]

    gone = _at_once(6, lambda c: c.delete(f"{stack.url}/v1/adapters/busy"))
    assert sorted(r.json()["status"] for r in gone) == ["not_loaded"] * 5 + ["unloaded"]
    assert files_in(stack.cache) == []


def test_loading_another_source_under_a_loaded_name_is_a_conflict(
    stack: Stack, archives: ArchiveServer,
) -> None:
    first = write_adapter(stack.roots / "c1")
    other = write_adapter(stack.roots / "c2")
    assert _post(stack, {"name": "conflict", "source": f"file://{first}"}).status_code == 201
    try:
        r = _post(stack, {"name": "conflict", "source": f"file://{other}"})
        assert r.status_code == 409
        assert _error(r)["code"] == "adapter_conflict"
        url = archives.add("/conflict.zip", zip_bytes(adapter_files()))
        r = _post(stack, {"name": "conflict", "source": url})
        assert (r.status_code, _error(r)["code"]) == (409, "adapter_conflict")
        assert stack.engine_adapters()["conflict"] == str(first)
        assert files_in(stack.cache) == []
    finally:
        httpx.delete(f"{stack.url}/v1/adapters/conflict", timeout=10)


# --- every bad input: a clear error, nothing loaded, nothing left in the cache -------------


def _bad_inputs(stack: Stack, archives: ArchiveServer) -> dict[str, tuple[object, int, str]]:
    """name of the case -> (request body, status, error code)."""
    outside = write_adapter(stack.roots.parent / "outside" / "evil")
    link = stack.roots / "escape"
    if not link.exists():
        os.symlink(outside, link)
    good = adapter_files()
    big = os.urandom(MAX_DOWNLOAD + 1)
    good_tar = tar_gz(good)
    return {
        "unknown scheme": ({"name": "b1", "source": "s3://bucket/a.tar.gz"}, 400,
                           "unsupported_source_scheme"),
        "traversal": ({"name": "b2", "source": f"file://{stack.roots}/../outside/evil"}, 400,
                      "path_traversal"),
        "symlink escape": ({"name": "b3", "source": f"file://{link}"}, 403,
                           "source_outside_roots"),
        "outside the roots": ({"name": "b4", "source": f"file://{outside}"}, 403,
                              "source_outside_roots"),
        "missing directory": ({"name": "b5", "source": f"file://{stack.roots}/nope"}, 400,
                              "source_not_found"),
        "not an archive": ({"name": "b6", "source": archives.add("/junk.tar.gz", b"<html>")},
                           400, "bad_archive"),
        "truncated archive": ({"name": "b7", "source": archives.add(
            "/cut.tar.gz", tar_gz({**good, "w.bin": os.urandom(30000)})[:20000])},
            400, "bad_archive"),
        "member with ..": ({"name": "b8", "source": archives.add(
            "/dotdot.tar.gz", tar_gz({**good, "../../evil": b"x"}))}, 400, "bad_archive"),
        "absolute member": ({"name": "b9", "source": archives.add(
            "/abs.zip", zip_bytes({**good, "/tmp/evil": b"x"}))}, 400, "bad_archive"),
        "link member": ({"name": "b10", "source": archives.add(
            "/link.tar.gz", tar_gz(good, links={"w": "/etc/passwd"}))}, 400, "bad_archive"),
        "no adapter inside": ({"name": "b11", "source": archives.add(
            "/empty.zip", zip_bytes({"README": b"hi"}))}, 400, "not_an_adapter"),
        "checksum mismatch": ({"name": "b12", "source": archives.add("/sum.tar.gz", good_tar),
                               "sha256": "0" * 64}, 400, "checksum_mismatch"),
        "malformed checksum": ({"name": "b13", "source": archives.add("/s2.tar.gz", good_tar),
                                "sha256": "abc"}, 400, "invalid_sha256"),
        "oversize, declared": ({"name": "b14", "source": archives.add("/big", big)}, 413,
                               "archive_too_large"),
        "oversize, streamed": ({"name": "b15", "source": archives.add(
            "/big-stream", big, with_length=False)}, 413, "archive_too_large"),
        "archive bomb": ({"name": "b16", "source": archives.add(
            "/bomb.tar.gz", tar_gz({**good, "w.bin": b"\0" * 300000}))}, 413,
            "archive_too_large"),
        "download 404": ({"name": "b17", "source": f"{archives.base}/missing.tar.gz"}, 400,
                         "download_failed"),
        "download refused": ({"name": "b18", "source": "http://127.0.0.1:9/a.tar.gz"}, 502,
                             "download_failed"),
        "engine refuses the adapter": ({"name": "b19", "source": archives.add(
            "/rank.tar.gz", tar_gz(adapter_files(rank=4096)))}, 502, "engine_error"),
        "name of the base model": ({"name": BASE, "source": archives.add("/base.zip",
                                   zip_bytes(good))}, 409, "name_conflict"),
        "bad name": ({"name": "../etc", "source": "file:///x"}, 400, "invalid_name"),
        "no name": ({"source": "file:///x"}, 400, "invalid_name"),
        "no source": ({"name": "b22"}, 400, "invalid_source"),
        "unknown field": ({"name": "b23", "source": "file:///x", "sha": "1"}, 400,
                          "unknown_field"),
        "not an object": (["b24"], 400, "invalid_json"),
        "body too large": ({"name": "b25", "source": "file:///" + "x" * 5000}, 413,
                           "body_too_large"),
    }


def test_every_bad_input_gets_a_clear_error_and_leaves_nothing(
    stack: Stack, archives: ArchiveServer,
) -> None:
    for case, (body, status, code) in _bad_inputs(stack, archives).items():
        r = _post(stack, body)
        assert r.status_code == status, (case, r.text)
        err = _error(r)
        assert err["code"] == code, (case, err)
        assert err["type"] != "api_error", case
        assert stack.engine_adapters() == {}, case
        assert files_in(stack.cache) == [], (case, files_in(stack.cache))


def test_malformed_json_and_unknown_routes_use_openai_errors(stack: Stack) -> None:
    r = httpx.post(f"{stack.url}/v1/adapters", content=b"{nope", timeout=10,
                   headers={"content-type": "application/json"})
    assert (r.status_code, _error(r)["code"]) == (400, "invalid_json")
    r = httpx.post(f"{stack.url}/v1/adapters", timeout=10,
                   content=(b"x" for _ in range(5000)))  # chunked, no Content-Length
    assert (r.status_code, _error(r)["code"]) == (413, "body_too_large")
    r = httpx.get(f"{stack.url}/v1/nothing", timeout=10)
    assert (r.status_code, _error(r)["type"]) == (404, "not_found_error")
    r = httpx.put(f"{stack.url}/v1/adapters", timeout=10)
    assert r.status_code == 405
    _error(r)
    r = httpx.delete(f"{stack.url}/v1/adapters/..bad", timeout=10)
    assert (r.status_code, _error(r)["code"]) == (400, "invalid_name")


# --- the token ----------------------------------------------------------------------


def test_the_token_guards_the_adapter_api_only(procs: ProcessGroup, tmp_path: Path) -> None:
    engine = start_sim(procs, name=BASE, extra_args=FAST)
    assert engine.url is not None
    folder = write_adapter(tmp_path / "roots" / "t1")
    sidecar = start_sidecar(procs, engine_url=engine.url,
                            extra_args=("--adapter-roots", str(tmp_path / "roots")),
                            env={"BRIX_SIDECAR_TOKEN": "s3cret-token"})
    url = f"{sidecar.url}/v1/adapters"
    body = {"name": "t1", "source": f"file://{folder}"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                    {"Authorization": "Basic s3cret-token"},
                    {"Authorization": "Bearer s3cret-token-and-more"}):
        for method, target in (("GET", url), ("POST", url), ("DELETE", f"{url}/t1")):
            r = httpx.request(method, target, headers=headers, json=body, timeout=10)
            assert r.status_code == 401, (headers, method)
            assert _error(r)["code"] == "invalid_token"
            assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{engine.url}/v1/models", timeout=10).json()["data"][1:] == []

    good = {"Authorization": "Bearer s3cret-token"}
    assert httpx.post(url, json=body, headers=good, timeout=10).status_code == 201
    assert httpx.get(url, headers=good, timeout=10).json()["data"][0]["name"] == "t1"
    assert httpx.delete(f"{url}/t1", headers=good, timeout=10).status_code == 200
    for open_path in ("/metrics", "/healthz", "/readyz"):
        assert httpx.get(f"{sidecar.url}{open_path}", timeout=10).status_code == 200


# --- the engine down -----------------------------------------------------------------


def test_engine_down_gives_503_and_leaves_nothing(
    procs: ProcessGroup, tmp_path: Path, archives: ArchiveServer,
) -> None:
    engine = start_sim(procs, name=BASE, extra_args=FAST)
    assert engine.url is not None
    cache = tmp_path / "cache"
    folder = write_adapter(tmp_path / "roots" / "d1")
    sidecar = start_sidecar(procs, engine_url=engine.url, extra_args=(
        "--adapter-roots", str(tmp_path / "roots"), "--cache-dir", str(cache)))
    engine.stop()
    url = archives.add("/down.tar.gz", tar_gz(adapter_files()))
    for body in ({"name": "d1", "source": f"file://{folder}"}, {"name": "d2", "source": url}):
        r = httpx.post(f"{sidecar.url}/v1/adapters", json=body, timeout=30)
        assert r.status_code == 503, r.text
        err = _error(r)
        assert err["code"] == "engine_unavailable"
        assert engine.url in str(err["message"])
    for method, path in (("GET", "/v1/adapters"), ("DELETE", "/v1/adapters/d1")):
        r = httpx.request(method, f"{sidecar.url}{path}", timeout=30)
        assert (r.status_code, _error(r)["code"]) == (503, "engine_unavailable")
    assert files_in(cache) == []
    assert httpx.get(f"{sidecar.url}/healthz", timeout=10).status_code == 200
    r = httpx.get(f"{sidecar.url}/readyz", timeout=10)
    assert (r.status_code, _error(r)["code"]) == (503, "engine_not_ready")


def test_leftovers_of_an_interrupted_download_are_removed_at_start(
    procs: ProcessGroup, tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    leftover = cache / ".incoming-sql-abc123"
    leftover.mkdir(parents=True)
    (leftover / "archive").write_bytes(b"half an archive")
    start_sidecar(procs, engine_url="http://127.0.0.1:9", extra_args=("--cache-dir", str(cache)))
    assert files_in(cache) == []


def test_an_unusable_cache_directory_stops_the_sidecar_with_one_line(
    procs: ProcessGroup, tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = procs.start(["-m", "inference.sidecar", "--port", "0", "--cache-dir",
                        str(blocker / "cache")], name="sidecar", ready=None)
    assert proc.popen.wait(60) == 1
    errors = [line for line in proc.output().splitlines() if "brix-sidecar:" in line]
    assert len(errors) == 1
    assert "--cache-dir" in errors[0]
    assert "Traceback" not in proc.output()
