"""Per-stream memory of a real saywell server: RSS with N open streams minus RSS with none.

    .venv/bin/python deploy/bench/stream_memory.py --streams 16 [--speech tests/fixtures/fox.wav]

Spawns `saywell-server` (packaged models, warm-up on), samples its RSS, opens N streams that each send
config and then audio in real time, samples RSS while all N are open, closes them, samples again. With
--speech each stream sends that file once (an utterance the engine assesses) and then silence; without,
only silence (what an idle learner's stream costs). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import psutil
import soundfile as sf

from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc

CHUNK_S = 0.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def settled_rss(pid: int, seconds: float = 3.0) -> float:
    """Median RSS over a few seconds, so one allocation burst does not decide the number."""
    samples = []
    for _ in range(int(seconds / 0.25)):
        samples.append(rss_mb(pid))
        time.sleep(0.25)
    return float(np.median(samples))


def requests(audio: np.ndarray, hold: threading.Event):
    yield pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
        audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000), interim_results=True))
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(16000 * CHUNK_S) * 2
    for i in range(0, len(pcm), step):
        yield pb.StreamAssessRequest(audio=pcm[i:i + step])
        time.sleep(CHUNK_S)
    silence = bytes(step)
    while not hold.is_set():
        yield pb.StreamAssessRequest(audio=silence)
        time.sleep(CHUNK_S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--speech", help="16 kHz mono file each stream says once (default: silence only)")
    parser.add_argument("--hold-s", type=float, default=15.0, help="how long all streams stay open")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "saywell.server", "--port", str(port), "--metrics-port", "0",
                               "--max-concurrent-streams", str(args.streams + 1), "--log-level", "WARNING"],
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=180)
        time.sleep(2)
        idle = settled_rss(server.pid)
        audio = sf.read(args.speech, dtype="float32")[0] if args.speech else np.zeros(16000, np.float32)
        hold = threading.Event()
        stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
        calls = [stub.StreamAssess(requests(audio, hold)) for _ in range(args.streams)]
        readers = [threading.Thread(target=lambda c=c: [None for _ in c], daemon=True) for c in calls]
        for reader in readers:
            reader.start()
        time.sleep(max(args.hold_s - 3, 1))
        loaded = settled_rss(server.pid)
        hold.set()
        for reader in readers:
            reader.join(60)
        time.sleep(2)
        after = settled_rss(server.pid)
        print(json.dumps({"streams": args.streams, "speech": bool(args.speech), "idle_rss_mb": round(idle, 1),
                          "rss_with_streams_mb": round(loaded, 1), "rss_after_mb": round(after, 1),
                          "per_stream_mb": round((loaded - idle) / args.streams, 2)}))
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
