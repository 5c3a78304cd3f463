"""pocketsphinx in worker processes gives the same alignments as in-process, and errors cross over intact."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import soundfile as sf

from saywell.engine.stages.alignment import AlignmentError, PhoneAligner, PhoneLoopStage
from saywell.engine.stages.base import AlignItem
from saywell.engine.stages.process_stage import ProcessStage

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
WORDS = "i would like a cup of coffee please".split()


def test_worker_processes_align_exactly_like_the_calling_process():
    audio = sf.read(FIXTURES / "coffee.wav", dtype="float32")[0]
    aligner = PhoneAligner()
    align, loop = ProcessStage("align"), ProcessStage("loop")
    try:
        remote_loop = loop.run_batch([audio])[0]
        assert remote_loop == PhoneLoopStage(aligner).run_batch([audio])[0]
        remote = align.run_batch([AlignItem(audio, WORDS, remote_loop)])[0]
        local = aligner.run_batch([AlignItem(audio, WORDS)])[0]
        assert remote == local
        failed = align.run_batch([AlignItem(audio[:800], WORDS)])[0]  # 50 ms cannot hold eight words
        assert isinstance(failed, AlignmentError) and "too short" in str(failed)
    finally:
        align.close()
        loop.close()


PARENT = """
import os, sys
from saywell.engine.stages.process_stage import ProcessStage
stage = ProcessStage("loop")
print(stage._executor().submit(os.getpid).result(), flush=True)
sys.stdin.read()  # until killed
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = pathlib.Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


def test_worker_processes_end_when_their_parent_is_killed():
    """A killed server (or `saywell eval`) must not leave its aligner workers running as orphans."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        parent.kill()
