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
        args = [
            "grpc_tools.protoc",
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
