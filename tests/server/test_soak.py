"""Soak: streams with random faults for a bounded time; nothing accepted is lost and memory stays flat.

SAYWELL_SOAK_SECONDS (default 60) lengthens it; BENCHMARKS.md records a 10-minute run.
"""
import os
import pathlib
import random
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


FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
PCM = sf.read(FIXTURES / "two_utterances.wav", dtype="int16")[0].tobytes()
SOAK_SECONDS = float(os.environ.get("SAYWELL_SOAK_SECONDS", "60"))
STREAMS = 6


def one_stream(target: str, rng: random.Random, tally: dict, lock: threading.Lock) -> None:
    fault = rng.choice(["none", "none", "none", "cancel", "garbage", "truncate"])
    requests = [pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
        audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000), interim_results=True))]
    requests += [pb.StreamAssessRequest(audio=PCM[i:i + 3200]) for i in range(0, len(PCM), 3200)]
    if fault == "garbage":
        requests.insert(5, pb.StreamAssessRequest(config=requests[0].config))
    elif fault == "truncate":
        requests.append(pb.StreamAssessRequest(audio=b"\x01"))
    ended = delivered = 0
    with grpc.insecure_channel(target) as channel:
        call = pb_grpc.PronunciationAssessmentServiceStub(channel).StreamAssess(iter(requests), timeout=30)
        try:
            for n, response in enumerate(call):
                kind = response.WhichOneof("event")
                if kind == "speech_event" and response.speech_event.type == pb.SPEECH_EVENT_TYPE_ENDED:
                    ended += 1
                delivered += kind in ("utterance", "utterance_error")
                if fault == "cancel" and n >= 3:
                    call.cancel()
                    break
        except grpc.RpcError:
            pass
        code = call.code()
    with lock:
        tally["streams"] += 1
        tally["codes"][code.name] = tally["codes"].get(code.name, 0) + 1
        if fault != "cancel":
            tally["ended"] += ended
            tally["delivered"] += delivered


def spawn_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = pathlib.Path(__file__).resolve().parents[1] / "integration" / "fake_server_main.py"
    child = subprocess.Popen([sys.executable, str(script), str(port)])
    target = f"127.0.0.1:{port}"
    grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=60)
    return child, target


def test_soak_with_random_faults_loses_nothing_and_keeps_memory_flat():
    child, target = spawn_server()  # its own process: the RSS measured is the server's alone
    process = psutil.Process(child.pid)
    tally = {"streams": 0, "ended": 0, "delivered": 0, "codes": {}}
    lock = threading.Lock()
    rss = []
    deadline = time.monotonic() + SOAK_SECONDS

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            one_stream(target, rng, tally, lock)

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(STREAMS)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rss.append(process.memory_info().rss / 2**20)
            time.sleep(1)
        for t in threads:
            t.join()
    finally:
        child.terminate()
        child.wait(30)
    assert tally["streams"] >= STREAMS * 3
    assert tally["ended"] == tally["delivered"], "an accepted utterance ended without assessment or error"
    assert set(tally["codes"]) <= {"OK", "CANCELLED", "INVALID_ARGUMENT"}, tally["codes"]
    settled = rss[len(rss) // 4:]  # after warm-up
    quarter = max(len(rss) // 4, 1)
    growth = float(np.median(rss[-quarter:]) - np.median(rss[quarter:2 * quarter]))
    print(f"\nsoak {SOAK_SECONDS:.0f} s, {STREAMS} workers: {tally['streams']} streams, {tally['ended']} utterances "
          f"ended = {tally['delivered']} delivered, statuses {tally['codes']}, server RSS after warm-up "
          f"{min(settled):.0f}-{max(settled):.0f} MB, median growth {growth:+.1f} MB")
    assert growth < 20, f"server RSS grew by {growth:.0f} MB (median of the last quarter vs the second)"
