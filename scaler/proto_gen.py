"""Generate the gRPC code for the protos in ``scaler/_proto`` (run by ``make proto``).

The generated ``*_pb2.py``, ``*_pb2_grpc.py`` and their ``.pyi`` stubs are build
outputs, not committed. Regenerate with ``python -m scaler.proto_gen``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent / "_proto"


def main() -> int:
    from grpc_tools import protoc  # build-time dependency (dev extra)

    protos = sorted(PROTO_DIR.glob("*.proto"))
    for proto in protos:
        outputs = [proto.with_name(proto.stem + suffix) for suffix in ("_pb2.py", "_pb2_grpc.py")]
        if all(o.exists() and o.stat().st_mtime >= proto.stat().st_mtime for o in outputs):
            continue
        # The mypy plugins are scripts beside this interpreter: name them, so
        # that generation works without the environment's bin/ on PATH (a
        # Docker build stage, a venv used without activating it).
        bindir = Path(sys.executable).parent
        args = [
            "grpc_tools.protoc",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"-I{PROTO_DIR.parent.parent}",
            f"--python_out={PROTO_DIR.parent.parent}",
            f"--grpc_python_out={PROTO_DIR.parent.parent}",
            f"--mypy_out={PROTO_DIR.parent.parent}",
            f"--mypy_grpc_out={PROTO_DIR.parent.parent}",
            str(proto.relative_to(PROTO_DIR.parent.parent)),
        ]
        rc = protoc.main(args)
        if rc != 0:
            print(f"protoc failed for {proto.name} (exit {rc})", file=sys.stderr)
            return 1
        print(f"generated gRPC code for {proto.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
