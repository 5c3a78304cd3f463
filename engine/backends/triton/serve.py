"""A real Triton Inference Server on this machine, for development and tests: the tritonserver 2.51 that the
`nvidia-pytriton` wheel bundles (CPU instances; `pip install nvidia-pytriton==0.7.0`, in the dev extra).

    python -m saywell.engine.backends.triton.serve --repository deploy/triton/models --grpc-port 8001

The wheel's Python-backend stub is built per Python version and links the interpreter's libpython, which it
finds through LD_LIBRARY_PATH (the running interpreter's LIBDIR; otherwise it loads another libpython and
fails), and its embedded Python takes its packages from the first `python` on PATH: this interpreter's (with
another numpy than the one the stub was given, outputs come back empty). The models import saywell: this
interpreter's site directories also travel in SAYWELL_SITE_DIRS (deploy/triton/model.py adds them).
Production runs NVIDIA's Triton image instead (deploy/triton/README.md).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from saywell.engine.types import EngineError


def _pytriton() -> Path:
    spec = importlib.util.find_spec("pytriton")  # found, not imported: pytriton's own import is heavy
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("no bundled tritonserver: pip install nvidia-pytriton==0.7.0 (saywell's dev extra)")
    return Path(next(iter(spec.submodule_search_locations)))


class LocalTriton:
    """tritonserver on `repository` with gRPC on `grpc_port` (HTTP and metrics on other ports, 0: off)."""

    def __init__(self, repository: str | Path, grpc_port: int = 8001, http_port: int = 0, metrics_port: int = 0,
                 log_verbose: int = 0) -> None:
        self.repository = Path(repository).resolve()
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.log_verbose = log_verbose
        self.process: subprocess.Popen | None = None
        self._backends: Path | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backend_directory(self) -> Path:
        """A backends folder with the python backend and the stub built for this interpreter's version."""
        root = _pytriton() / "tritonserver"
        backends = Path(tempfile.mkdtemp(prefix="saywell-triton-backends-"))
        shutil.copytree(root / "backends" / "python", backends / "python",
                        ignore=shutil.ignore_patterns("__pycache__"))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise EngineError(f"the bundled tritonserver has no Python-backend stub for Python {version}")
        shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
        return backends

    def command(self) -> list[str]:
        binary = _pytriton() / "tritonserver" / "bin" / "tritonserver"
        return [str(binary), f"--model-repository={self.repository}", f"--backend-directory={self._backends}",
                f"--grpc-port={self.grpc_port}", f"--allow-http={str(bool(self.http_port)).lower()}",
                f"--http-port={self.http_port or 8000}", f"--allow-metrics={str(bool(self.metrics_port)).lower()}",
                f"--metrics-port={self.metrics_port or 8002}", "--strict-readiness=true", "--exit-timeout-secs=5",
                "--pinned-memory-pool-byte-size=0",  # no CUDA here: nothing to pin
                f"--log-verbose={self.log_verbose}",
                # Python-backend shared memory is named per server, so several servers run side by side.
                f"--backend-config=python,shm-region-prefix-name=saywell{self.grpc_port}_"]

    def environment(self) -> dict[str, str]:
        libraries = [sysconfig.get_config_var("LIBDIR"), str(_pytriton().parent / "nvidia_pytriton.libs")]
        if os.environ.get("LD_LIBRARY_PATH"):
            libraries.append(os.environ["LD_LIBRARY_PATH"])
        sites = site.getsitepackages() + [site.getusersitepackages()]
        # The stub's embedded Python finds its prefix from the `python` first on PATH: this interpreter's, so the
        # models get its packages (numpy among them: the stub must not load another numpy than it was given).
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(libraries), PATH=path,
                    SAYWELL_SITE_DIRS=os.pathsep.join(p for p in sites if Path(p).is_dir()))

    def start(self, stdout=None, stderr=None) -> subprocess.Popen:
        if self._backends is None:
            self._backends = self._backend_directory()
        self.process = subprocess.Popen(self.command(), env=self.environment(), stdout=stdout, stderr=stderr)
        return self.process

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until Triton says it is ready (every model loaded); raises EngineError if it exits or takes too long."""
        from tritonclient.grpc import InferenceServerClient
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + timeout_s
        with InferenceServerClient(self.url) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise EngineError(f"tritonserver exited with {self.process.returncode} while starting")
                try:
                    if client.is_server_ready(client_timeout=1.0):
                        return
                except InferenceServerException:
                    pass
                time.sleep(0.2)
        raise EngineError(f"tritonserver on {self.url} was not ready after {timeout_s:g} s")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (Triton unloads its models and exits), SIGKILL if it will not; removes the backends copy."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._backends is not None:
            shutil.rmtree(self._backends, ignore_errors=True)
            self._backends = None

    def __enter__(self) -> LocalTriton:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a saywell Triton model repository with the tritonserver "
                                                 "bundled in nvidia-pytriton (CPU).")
    parser.add_argument("--repository", required=True, help="the model repository (deploy/triton/export.py)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=0, help="0: no HTTP endpoint")
    parser.add_argument("--metrics-port", type=int, default=0, help="0: no Prometheus metrics")
    parser.add_argument("--log-verbose", type=int, default=0)
    args = parser.parse_args(argv)
    triton = LocalTriton(args.repository, args.grpc_port, args.http_port, args.metrics_port, args.log_verbose)
    stop = {"signal": None}

    def forward(signum, _frame):
        stop["signal"] = signum
        if triton.process is not None and triton.process.poll() is None:
            triton.process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    try:
        process = triton.start()
        return process.wait()
    finally:
        triton.cleanup()


if __name__ == "__main__":
    sys.exit(main())
