"""`saywell` command line: assess files against a server, show its capabilities,
and dispatch engine-side commands (eval, train) and the load tester (bench).

Engine commands are imported lazily so `pip install saywell` stays free of torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from saywell.client.audio_files import load_audio
from saywell.client.errors import RpcFailed, SaywellClientError, ServerUnreachable
from saywell.client.options import DEFAULT_TARGET, ClientOptions, StreamOptions
from saywell.client.output import ConsoleOutput, print_error
from saywell.client.render import use_color
from saywell.client.stream import SaywellClient
from saywell.v1 import assessment_pb2 as pb

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR = 0, 2

# Engine-side subcommands, reached by lazy import: name -> module.
_ENGINE_COMMANDS = {"eval": "saywell.engine.offline.evaluation", "train": "saywell.engine.offline.training"}
_BENCH_MODULE = "saywell.client.bench"


def _add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        default=os.environ.get("SAYWELL_TARGET", DEFAULT_TARGET),
        help="server HOST:PORT (default: $SAYWELL_TARGET or %(default)s)",
    )
    p.add_argument("--token", default=os.environ.get("SAYWELL_TOKEN"), help="bearer token (default: $SAYWELL_TOKEN)")
    p.add_argument("--tls-ca", metavar="PEM", help="root certificate: connect with TLS")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS (with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline of unary calls, s (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saywell", description="Streaming pronunciation assessment client.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("assess", help="assess an audio file (WAV, FLAC, Ogg/Opus)")
    a.add_argument("file", metavar="FILE")
    _add_connection_args(a)
    a.add_argument("--reference-text", default="", help="what the learner should say (closed mode)")
    a.add_argument("--phones", action="store_true", help="show phones with their goodness")
    a.add_argument("--no-color", action="store_true", help="no ANSI colours (also: NO_COLOR env)")
    a.add_argument("--chunk-ms", type=int, default=100, help="audio per message, 20..200 ms (default %(default)s)")
    a.add_argument("--realtime", action="store_true", help="send audio at real-time pace, like a microphone")
    a.add_argument("--sensitivity", type=float, default=None,
                   help="flag sensitivity 0..1: 0 flags the fewest words, 1 the most (default: the server's, 0.5)")
    a.add_argument("--silence-ms", type=int, default=0, help="silence ending an utterance, ms (0: server default)")
    a.add_argument("--unary", action="store_true", help="use the unary Assess RPC instead of streaming")
    a.add_argument("--passthrough", action="store_true", help="send .flac/.ogg/.opus as is, not decoded to PCM")
    a.add_argument("-v", "--verbose", action="store_true", help="show live speech events and interim words")
    a.add_argument("--scale", type=int, choices=(10, 100), default=10,
                   help="scores in --json/--events on 0..10 (the corpus's scale, default) or 0..100")
    a.add_argument("--events", action="store_true",
                   help="print every response as it arrives, one JSON object per line (NDJSON), for piping")

    c = sub.add_parser("capabilities", help="show what the server accepts")
    _add_connection_args(c)

    for name, help_text in (
        ("eval", "evaluate the engine (needs the server extra)"),
        ("train", "train engine models (needs the server extra)"),
        ("bench", "load-test a server"),
    ):
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _client(args: argparse.Namespace) -> SaywellClient:
    options = ClientOptions(timeout_s=args.timeout, tls_root_cert=args.tls_ca, tls_client_cert=args.tls_cert,
                            tls_client_key=args.tls_key, bearer_token=args.token)
    return SaywellClient(args.target, options=options)


def _assess(args: argparse.Namespace) -> int:
    if args.events and args.json:
        raise ValueError("--events and --json are two output formats: choose one")
    color = use_color(sys.stdout, args.no_color) and not (args.json or args.events)
    live = args.verbose or args.events or (sys.stdout.isatty() and not args.json)
    if args.scale == 100 and not (args.json or args.events):
        raise ValueError("--scale 100 applies to --json and --events output")
    out = ConsoleOutput(json_mode=args.json, events=args.events, scale=args.scale, phones=args.phones, color=color,
                        live=live)
    source = load_audio(args.file, decode=not args.passthrough)
    opts = StreamOptions(
        reference_text=args.reference_text,
        interim_results=live,
        chunk_ms=args.chunk_ms,
        realtime_factor=1.0 if args.realtime else None,
        endpointing={"end_of_utterance_silence_ms": args.silence_ms} if args.silence_ms else None,
        flag_sensitivity=args.sensitivity,
    )
    with _client(args) as client:
        if args.unary:
            response = client.assess_source(
                source, reference_text=opts.reference_text, flag_sensitivity=opts.flag_sensitivity
            )
            out.on_assess(response)
        else:
            for response in client.stream_with(source, opts):
                out.on_response(response)
    out.finish()
    return EXIT_OK


def _capabilities(args: argparse.Namespace) -> int:
    with _client(args) as client:
        caps: pb.Capabilities = client.capabilities()
    ConsoleOutput(json_mode=args.json).capabilities(caps)
    return EXIT_OK


def _dispatch(command: str, rest: list[str]) -> int:
    """Run a subcommand implemented in another module, imported only now."""
    if command == "bench":
        try:
            module = importlib.import_module(_BENCH_MODULE)
        except ModuleNotFoundError as e:
            if e.name != _BENCH_MODULE:
                raise
            print_error("'saywell bench' is not available in this version")
            return EXIT_ERROR
    else:
        try:
            module = importlib.import_module(_ENGINE_COMMANDS[command])
        except ImportError as e:
            print_error(f"'saywell {command}' needs the server extra: pip install 'saywell[server]'", str(e))
            return EXIT_ERROR
    result = module.main(rest)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in _ENGINE_COMMANDS or argv[0] == "bench"):
        return _dispatch(argv[0], argv[1:])  # their own parsers see every remaining argument
    args = build_parser().parse_args(argv)
    try:
        return _assess(args) if args.command == "assess" else _capabilities(args)
    except ServerUnreachable as e:
        print_error(f"no saywell server at {e.target} — start one with `saywell-server` "
                    "(`pip install 'saywell[server]'`; `make serve` in a checkout)")
        return EXIT_ERROR
    except RpcFailed as e:
        print_error(f"{e.code_name}: {e.details}")
        return EXIT_ERROR
    except (SaywellClientError, ValueError) as e:
        print_error(str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
