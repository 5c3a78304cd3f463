"""pocketsphinx in worker processes gives the same alignments as in-process, and errors cross over intact."""
import pathlib

import soundfile as sf

from saywell.engine.aligner_process import ProcessStage
from saywell.engine.alignment import AlignmentError, PhoneAligner, PhoneLoopStage

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
WORDS = "i would like a cup of coffee please".split()


def test_worker_processes_align_exactly_like_the_calling_process():
    audio = sf.read(FIXTURES / "coffee.wav", dtype="float32")[0]
    aligner = PhoneAligner()
    align, loop = ProcessStage("align"), ProcessStage("loop")
    try:
        remote_loop = loop.run_batch([audio])[0]
        assert remote_loop == PhoneLoopStage(aligner).run_batch([audio])[0]
        remote = align.run_batch([(audio, WORDS, remote_loop)])[0]
        local = aligner.run_batch([(audio, WORDS)])[0]
        assert remote == local
        failed = align.run_batch([(audio[:800], WORDS)])[0]  # 50 ms cannot hold eight words
        assert isinstance(failed, AlignmentError) and "too short" in str(failed)
    finally:
        align.close()
        loop.close()
