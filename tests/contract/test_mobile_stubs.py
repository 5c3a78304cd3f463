"""The offline mobile-stub route (proto/stubs/check.sh, issue #19) builds and runs, and fails loudly when it cannot.

The check installs Debian's protoc, grpc-java plugin, protobuf-java and grpc-java when they are missing (root or
passwordless sudo), generates Java, gRPC-Java and Kotlin stubs from the contract, compiles them and runs a tiny
Java program (messages round trip, an in-process call through the generated stub) and a tiny Kotlin one (the DSL).
First run on a fresh machine: about a minute more (apt packages, `npm ci` of the Kotlin compiler, Debian's protobuf
source for the Kotlin runtime, cached in ~/.cache/saywell/stubs); then about 15 s.
"""
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECK = ROOT / "proto" / "stubs" / "check.sh"


def run_check(*args: str, timeout: float = 540) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CHECK), *args], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def report(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-8000:]}"


def test_java_and_kotlin_stubs_generate_compile_and_run():
    result = run_check()
    assert result.returncode == 0, report(result)
    # Each program prints its line only after all of its checks passed; the summary comes after both.
    assert "java stub check: ok" in result.stdout, report(result)
    assert "kotlin stub check: ok" in result.stdout, report(result)
    assert re.search(r"stub check passed .*protoc \S+, grpc-java plugin \S+, protobuf-java \S+, grpc-java \S+",
                     result.stdout), report(result)


def copy_contract(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "proto"
    shutil.copytree(ROOT / "proto" / "saywell", root / "saywell", ignore=shutil.ignore_patterns("*.py", "*.pyi",
                                                                                                "__pycache__"))
    return root


def mutate(root: pathlib.Path, pattern: str, replacement: str) -> None:
    path = root / "saywell" / "v1" / "assessment.proto"
    text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.DOTALL | re.MULTILINE)
    assert count == 1, f"the contract no longer matches {pattern!r}; pick another mutation"
    path.write_text(text)


@pytest.mark.parametrize("pattern, replacement, expected", [
    # The Java program imports the java_package's classes: moving them must fail the Java compile.
    (r'^option java_package = "[^"]+";', 'option java_package = "dev.saywell.moved";', "javac failed"),
    # No service, no gRPC stubs: the check must say so rather than pass on messages alone.
    (r"^service \w+ \{.*?^\}\n", "", "protoc generated no *Grpc.java"),
], ids=["java-package-moved", "no-service"])
def test_a_contract_the_clients_cannot_build_fails_the_check(tmp_path, pattern, replacement, expected):
    root = copy_contract(tmp_path)
    mutate(root, pattern, replacement)
    result = run_check("--proto-root", str(root), "--no-kotlin", timeout=300)
    assert result.returncode != 0, report(result)
    assert f"FAILED: {expected}" in result.stderr, report(result)
    assert "stub check passed" not in result.stdout, report(result)
