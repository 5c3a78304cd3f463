"""`make contract-check` and `make proto-release` (issue #19): buf lint with the repo's proto/buf.yaml, and buf breaking
against the release baseline that `proto-release` records. Each test runs the Makefile targets themselves on a
copy of the contract, with the baseline in a temporary folder, so the committed baseline is never touched.
"""
import pathlib
import re
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], check=False, capture_output=True,
                          text=True, timeout=300)


def report(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"


def copy_module(tmp_path: pathlib.Path, name: str = "proto") -> pathlib.Path:
    """The buf module (buf.yaml and the .proto files) without the generated Python."""
    root = tmp_path / name
    shutil.copytree(ROOT / "proto" / "saywell", root / "saywell",
                    ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__"))
    shutil.copy(ROOT / "proto" / "buf.yaml", root / "buf.yaml")
    return root


def mutate(root: pathlib.Path, pattern: str, replacement: str) -> None:
    path = root / "saywell" / "v1" / "assessment.proto"
    text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.MULTILINE)
    assert count == 1, f"the contract no longer matches {pattern!r}; pick another mutation"
    path.write_text(text)


def test_without_a_release_lint_runs_and_breaking_is_skipped_with_a_message(tmp_path):
    result = make("contract-check", f"PROTO_BASELINE={tmp_path / 'none.yaml'}")
    assert result.returncode == 0, report(result)
    assert "buf lint proto" in result.stdout, report(result)
    assert "buf breaking skipped" in result.stdout, report(result)


def test_lint_violations_fail_contract_check(tmp_path):
    module = copy_module(tmp_path)
    # A message name that is not PascalCase: the STANDARD rules' MESSAGE_PASCAL_CASE.
    mutate(module, r"\Z", "\nmessage bad_name {}\n")
    result = make("contract-check", f"BUF_INPUT={module}", f"PROTO_BASELINE={tmp_path / 'none.yaml'}")
    assert result.returncode != 0, report(result)
    assert "bad_name" in result.stdout + result.stderr, report(result)


def test_release_baseline_passes_unchanged_and_catches_a_breaking_change(tmp_path):
    baseline = tmp_path / "releases" / "v1.yaml"
    released = make("proto-release", f"PROTO_BASELINE={baseline}")
    assert released.returncode == 0, report(released)
    image = baseline.read_text()
    assert "name: saywell/v1/assessment.proto" in image and "sourceCodeInfo" not in image

    same = make("contract-check", f"PROTO_BASELINE={baseline}")
    assert same.returncode == 0, report(same)
    assert "no breaking change since" in same.stdout, report(same)

    # Lint-clean but wire-breaking: a field's type changes (the FILE rules' FIELD_SAME_TYPE).
    module = copy_module(tmp_path, "changed")
    mutate(module, r"^(\s+)int32 (\w+) = (\d+);", r"\1int64 \2 = \3;")
    broken = make("contract-check", f"BUF_INPUT={module}", f"PROTO_BASELINE={baseline}")
    assert broken.returncode != 0, report(broken)
    assert 'changed type from "int32" to "int64"' in broken.stdout + broken.stderr, report(broken)

    # And such a contract cannot be recorded as the next release.
    refused = make("proto-release", f"BUF_INPUT={module}", f"PROTO_BASELINE={baseline}")
    assert refused.returncode != 0, report(refused)
    assert baseline.read_text() == image


def test_buf_gen_pins_every_remote_plugin():
    text = (ROOT / "proto" / "buf.gen.yaml").read_text()
    remotes = re.findall(r"^\s*- remote:\s*(\S+)", text, flags=re.MULTILINE)
    assert remotes, "no remote plugins in proto/buf.gen.yaml"
    unpinned = [r for r in remotes if not re.fullmatch(r"buf\.build/[\w.-]+/[\w.-]+:v\d+(\.\d+)+(-\d+)?", r)]
    assert not unpinned, f"remote plugins without an exact version: {unpinned}"
    names = {r.split(":")[0] for r in remotes}
    # grpc/kotlin's coroutine stubs call the method descriptors of grpc/java's *Grpc classes.
    if "buf.build/grpc/kotlin" in names:
        assert "buf.build/grpc/java" in names, "buf.build/grpc/kotlin needs buf.build/grpc/java's stubs"
