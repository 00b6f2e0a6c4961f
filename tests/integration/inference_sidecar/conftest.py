"""Fixtures of the sidecar's integration tests: an HTTP server for adapter archives,
adapter folders and archives, and the sidecar's cache checks."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ADAPTER_CONFIG = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"],
                  "peft_type": "LORA"}


def write_adapter(folder: Path, *, rank: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({**ADAPTER_CONFIG, "r": rank}))
    (folder / "adapter_model.safetensors").write_bytes(b"\x00" * 2048)
    return folder


def tar_gz(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def adapter_files(prefix: str = "", *, rank: int = 8) -> dict[str, bytes]:
    return {f"{prefix}adapter_config.json": json.dumps({**ADAPTER_CONFIG, "r": rank}).encode(),
            f"{prefix}adapter_model.safetensors": b"\x01" * 4096}


def files_in(folder: Path) -> list[Path]:
    """Every file and leftover temporary folder under ``folder`` (an empty list: clean)."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() or p.name.startswith(".incoming-"))


@dataclass
class ArchiveServer:
    """Serves byte strings at paths; ``with_length=False`` streams without Content-Length."""

    base: str
    routes: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def add(self, path: str, data: bytes, *, with_length: bool = True) -> str:
        self.routes[path] = (data, with_length)
        return self.base + path


@pytest.fixture(scope="module")
def archives() -> Iterator[ArchiveServer]:
    server_ref: dict[str, ArchiveServer] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            srv = server_ref["s"]
            srv.hits[self.path] = srv.hits.get(self.path, 0) + 1
            if self.path not in srv.routes:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, with_length = srv.routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if with_length:
                self.send_header("Content-Length", str(len(data)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for i in range(0, len(data), 65536):
                self.wfile.write(data[i:i + 65536])

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server_ref["s"] = ArchiveServer(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, name="archive-server", daemon=True)
    thread.start()
    try:
        yield server_ref["s"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
