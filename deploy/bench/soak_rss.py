"""Soak with the real engine: is the server's memory flat while streams run for many minutes?

    .venv/bin/python deploy/bench/soak_rss.py --seconds 600 --streams 1 --data tests/fixtures

Spawns a server on its packaged models, runs `saywell bench` against it for the given time, samples the RSS
of the server and its pocketsphinx workers every --every seconds, and prints one JSON line: the samples
(seconds, total MB, server process MB), the median of the first and the last minute, their difference, and
the fitted slope in MB per minute after the first minute (the first utterances grow the engine once).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import numpy as np
import psutil

from saywell.client.bench_server import SpawnedServer


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """RSS of the server process and of its children (the pocketsphinx workers), MB."""
    root = psutil.Process(pid)
    own, children = root.memory_info().rss, 0
    for process in root.children(recursive=True):
        try:
            children += process.memory_info().rss
        except psutil.Error:
            pass
    return own / 2**20, children / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--data", default="tests/fixtures")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="flag for the spawned server, e.g. --server-arg=--interim-step-ms=500")
    args = parser.parse_args()
    with SpawnedServer(args.server_arg) as server:
        bench = subprocess.Popen([sys.executable, "-m", "saywell.client.cli", "bench", "--target", server.target,
                                  "--streams", str(args.streams), "--duration", str(args.seconds),
                                  "--data", args.data, "--report", "/dev/null"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        samples: list[tuple[float, float]] = []
        started = time.monotonic()
        done = threading.Event()
        threading.Thread(target=lambda: (bench.wait(), done.set()), daemon=True).start()
        while not done.wait(args.every):
            own, children = tree_rss_mb(server.pid)
            samples.append((round(time.monotonic() - started, 1), round(own + children, 1), round(own, 1)))
        output = bench.stdout.read()
    times = np.array([t for t, _, _ in samples])
    rss = np.array([r for _, r, _ in samples])
    server_only = np.array([r for _, _, r in samples])
    first, last = rss[times <= 60], rss[times >= times.max() - 60]
    settled = times > 60
    slope = float(np.polyfit(times[settled] / 60, rss[settled], 1)[0]) if settled.sum() >= 3 else None
    print(json.dumps({"seconds": args.seconds, "streams": args.streams, "bench_exit": bench.returncode,
                      "first_minute_mb": float(np.median(first)), "last_minute_mb": float(np.median(last)),
                      "drift_mb": round(float(np.median(last) - np.median(first)), 1),
                      "slope_mb_per_min_after_first": round(slope, 2) if slope is not None else None,
                      "server_process_first_last_minute_mb": [float(np.median(server_only[times <= 60])),
                                                             float(np.median(server_only[times >= times.max() - 60]))],
                      "samples": samples, "bench_tail": output.strip().splitlines()[-6:]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
