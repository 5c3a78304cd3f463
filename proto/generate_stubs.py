"""Regenerates the Python stubs of the saywell.v1 contract beside the .proto files.

Run with the pinned grpcio-tools (dev extra): `python proto/generate_stubs.py`.
`--check` regenerates into a temporary folder and fails when the committed stubs differ,
so a changed .proto cannot land with stale stubs.
"""
from __future__ import annotations

import argparse
import filecmp
import pathlib
import sys
import tempfile

from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parent
PACKAGE_DIR = PROTO_ROOT / "saywell" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: pathlib.Path) -> None:
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PACKAGE_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{pathlib.Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def stale_files() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        generate(pathlib.Path(tmp))
        fresh_dir = pathlib.Path(tmp) / "saywell" / "v1"
        names = sorted(p.name for p in fresh_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))
        return [n for n in names if not (PACKAGE_DIR / n).exists()
                or not filecmp.cmp(fresh_dir / n, PACKAGE_DIR / n, shallow=False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    if parser.parse_args().check:
        stale = stale_files()
        if stale:
            print("stale generated stubs: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    generate(PROTO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
