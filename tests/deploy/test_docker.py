"""deploy/docker: no container daemon runs here, so the images are not built. What is checked instead: hadolint on
both Dockerfiles; the images' environment is a server configuration that listens on every interface on the
exposed ports, offline; the build repeats `make install`'s steps on every package the project installs; and the
image's HEALTHCHECK script, run against live servers, follows the server's health through a drain and over
mutual TLS."""
from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from deploy_pki import TestAuthority
from deploy_stack import REPO, HeldStream, start_saywell, wait_until

from saywell.server.config import load_config

DOCKER = REPO / "deploy" / "docker"
DOCKERFILES = (DOCKER / "cpu.Dockerfile", DOCKER / "cuda.Dockerfile")
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def image_env(steps: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for name, args in steps:
        if name == "ENV":
            for pair in shlex.split(args):
                key, value = pair.split("=", 1)
                env[key] = value
    return env


def healthcheck_argv(path: Path) -> list[str]:
    (args,) = [a for n, a in final_stage(path) if n == "HEALTHCHECK"]
    argv = json.loads(args.split("CMD", 1)[1])
    copied = {dest: src for n, a in final_stage(path) if n == "COPY" and not a.startswith("--from")
              for src, dest in [a.split()]}
    # Run it as the image would, with this interpreter and the file the image copies to that path.
    return [sys.executable if argv[0] == "python" else argv[0]] + [str(REPO / copied.get(a, a)) if a in copied else a
                                                                   for a in argv[1:]]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    result = subprocess.run([str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_a_rubber_stamp(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install grpcio\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3013" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_serves_on_every_interface_offline_as_non_root(dockerfile):
    steps = final_stage(dockerfile)
    env = image_env(steps)
    config = load_config([], environ=env)
    assert config.host == "0.0.0.0" and config.profile == "cpu"
    exposed = {int(port) for n, a in steps if n == "EXPOSE" for port in a.split()}
    assert exposed == {config.port, config.metrics_port} == {50051, 9464}
    assert env["HF_HUB_OFFLINE"] == "1"
    (user,) = [a for n, a in steps if n == "USER"]
    uid, gid = user.split(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    assert ("ENTRYPOINT", '["saywell-server"]') in steps and ("STOPSIGNAL", "SIGTERM") in steps
    # The weights joined at build time are where the server will look for them.
    build = instructions(dockerfile)[:len(instructions(dockerfile)) - len(steps)]
    assert image_env(build)["SAYWELL_CACHE_DIR"] == env["SAYWELL_CACHE_DIR"]
    assert any(n == "RUN" and "whisper_model_dir('base')" in a for n, a in build)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_repeats_make_install(dockerfile):
    """torch first, pinned as the Makefile and the server extra pin it; then saywell[server] from a context that
    holds every package folder pyproject maps (the root .dockerignore lets in nothing else)."""
    steps = instructions(dockerfile)
    runs = [a for n, a in steps if n == "RUN" and "pip install" in a]
    makefile_torch = re.search(r'pip install --quiet "(torch==[^"]+)"', (REPO / "Makefile").read_text()).group(1)
    pyproject = (REPO / "pyproject.toml").read_text()  # read as text: tomllib is 3.11+, saywell supports 3.10
    server_extra = re.search(r"^server = \[(.*?)^\]", pyproject, re.S | re.M).group(1)
    assert f'"{makefile_torch}"' in server_extra
    torch_step = next(i for i, a in enumerate(runs) if "torch==" in a)
    assert f'"{makefile_torch}"' in runs[torch_step]
    assert "[server]" in runs[torch_step + 1], "saywell[server] is installed right after torch"
    copied = {source for n, a in steps if n == "COPY" and not a.startswith("--from") for source in a.split()[:-1]}
    package_dirs = re.search(r"^package-dir = \{(.*)\}$", pyproject, re.M).group(1)
    package_roots = {Path(p).parts[0] for p in re.findall(r'= "([^"]+)"', package_dirs)}
    assert {"proto", "server", "client", "engine"} <= package_roots  # the regex read the table
    assert package_roots | {"pyproject.toml", "README.md"} <= copied
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert (REPO / ".dockerignore").read_text().splitlines()[2] == "*", "an allowlist: everything else stays out"
    for source in copied:
        assert source in allowed, f"COPY {source} is excluded from the build context by .dockerignore"
        assert (REPO / source).exists()
    assert "deploy/docker/healthcheck.py" in allowed


def test_the_image_gets_every_package():
    """The image installs saywell as a wheel, which holds only the packages pyproject lists; an editable
    install (make install) imports any folder below a mapped one. A package missing from the list works in
    development and is absent from the image."""
    pyproject = (REPO / "pyproject.toml").read_text()
    mapping = dict(re.findall(r'"([a-z.0-9]+)" = "([^"]+)"', re.search(r"^package-dir = \{(.*)\}$", pyproject,
                                                                       re.M).group(1)))
    listed = set(re.findall(r'"([a-z.0-9_]+)"', re.search(r"^packages = \[(.*?)\]", pyproject, re.M | re.S).group(1)))
    assert {"saywell.server", "saywell.engine", "saywell.client"} <= listed  # the lists were read
    found = set()
    for package, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            if "__pycache__" not in relative.parts:
                found.add(".".join((package, *relative.parts)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_healthcheck_follows_the_server_through_its_drain(tmp_path):
    argv = healthcheck_argv(DOCKERFILES[0])
    assert argv == healthcheck_argv(DOCKERFILES[1])
    with ExitStack() as stack:
        server = start_saywell(stack, tmp_path, "server", profile="synthetic", grace_s="30")

        def health() -> int:
            env = {"PATH": "/usr/bin:/bin", "SAYWELL_PORT": str(server.port)}
            return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode

        assert health() == 0
        held = stack.enter_context(HeldStream(server.target))
        wait_until(lambda: server.metrics()["saywell_active_streams"] == 1, 10, "the held stream")
        server.popen.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in server.logs(), 10, "the drain to start")
        assert server.alive() and health() == 1, "a draining server must fail its health check"
        assert held.finish()[-1] == "summary", "the open stream still ends normally"
        assert server.popen.wait(30) == 0
        assert health() == 1


def test_healthcheck_speaks_mutual_tls(tmp_path):
    authority = TestAuthority(tmp_path)
    cert, key = authority.issue("server", client_auth=True)
    (tmp_path / "other").mkdir()
    stranger = TestAuthority(tmp_path / "other")
    tls = {"tls_cert": str(cert), "tls_key": str(key), "tls_client_ca": str(authority.ca)}
    argv = healthcheck_argv(DOCKERFILES[0])
    with ExitStack() as stack:
        server = start_saywell(stack, tmp_path, "server", profile="synthetic", **tls)

        def health(ca: Path) -> subprocess.CompletedProcess:
            env = {"PATH": "/usr/bin:/bin", "SAYWELL_PORT": str(server.port), "SAYWELL_HEALTHCHECK_CA": str(ca),
                   **{f"SAYWELL_{name.upper()}": value for name, value in tls.items()}}
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)

        assert health(authority.ca).returncode == 0
        refused = health(stranger.ca)  # a server certificate the check cannot trust
        assert refused.returncode == 1 and "no answer" in refused.stderr
