from __future__ import annotations

import json
import subprocess
import sys
import types

import grpc
import pytest

from saywell.client import cli


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("NO_COLOR", "SAYWELL_TARGET", "SAYWELL_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_assess_json_exits_0_with_parseable_report(fake_server, fixtures_dir, capsys):
    code = cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target, "--json",
                     "--reference-text", "the quick brown fox", "--chunk-ms", "50"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"utterances", "errors", "summary"}
    assert report["utterances"][0]["words"][0]["word"] == "the"
    assert report["summary"]["utterances"] == 1
    sent = fake_server.servicer.stream_requests
    assert sent[0].config.assessment.reference_text == "the quick brown fox"
    assert sent[0].config.interim_results is False  # no live display when piped
    assert {len(r.audio) for r in sent[1:-1]} == {1600}


def test_assess_human_output_plain_when_piped(fake_server, fixtures_dir, capsys):
    code = cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target, "--phones"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "\x1b[" not in out
    for word in ("the", "quick", "[brown]", "fox", "+um", "goodness", "mean total 6.8"):
        assert word in out


def test_assess_on_a_tty_is_coloured_and_live_unless_no_color(fake_server, fixtures_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target]) == 0
    out, _ = capsys.readouterr()
    assert "\x1b[32mthe\x1b[0m" in out
    assert "speech started" in out and "\n\r  · u1 \x1b[2mquick⚑" in out  # the hypothesis, drawn in place
    assert "…\x1b[0m\r\x1b[K\x1b[2m  [speech ended" in out, "and cleared before the next line is printed"
    assert fake_server.servicer.stream_requests[0].config.interim_results is True

    assert cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target, "--no-color"]) == 0
    assert "\x1b[" not in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target]) == 0
    assert "\x1b[" not in capsys.readouterr().out


def test_assess_options_reach_the_server(fake_server, fixtures_dir, monkeypatch, capsys):
    monkeypatch.setenv("SAYWELL_TARGET", fake_server.target)
    monkeypatch.setenv("SAYWELL_TOKEN", "tok")
    code = cli.main(["assess", str(fixtures_dir / "market_8k.wav"), "--sensitivity", "0.8",
                     "--silence-ms", "400", "--json"])
    assert code == 0, capsys.readouterr().err
    cfg = fake_server.servicer.stream_requests[0].config
    assert cfg.audio.sample_rate_hertz == 8000
    assert cfg.endpointing.end_of_utterance_silence_ms == 400
    assert cfg.assessment.flag_sensitivity == pytest.approx(0.8)
    assert fake_server.servicer.metadata[0]["authorization"] == "Bearer tok"


def test_assess_unary_uses_the_assess_rpc(fake_server, fixtures_dir, capsys):
    code = cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target, "--unary", "--json",
                     "--reference-text", "fox"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert fake_server.servicer.stream_requests == []
    (request,) = fake_server.servicer.unary_requests
    assert request.assessment.reference_text == "fox" and request.audio.sample_rate_hertz == 16000
    assert json.loads(out)["summary"]["utterances"] == 1


def test_server_error_exits_2_with_status_on_stderr(fake_server, fixtures_dir, capsys):
    fake_server.servicer.abort = (grpc.StatusCode.INVALID_ARGUMENT, "reference_text too long")
    code = cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target])
    out, err = capsys.readouterr()
    assert code == 2
    assert "error: INVALID_ARGUMENT: reference_text too long" in err
    assert out == ""


def test_unreachable_server_exits_2_with_a_hint(dead_target, fixtures_dir, capsys):
    code = cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", dead_target])
    err = capsys.readouterr().err
    assert code == 2
    assert f"no saywell server at {dead_target}" in err and "saywell-server" in err and "saywell[server]" in err
    assert cli.main(["capabilities", "--target", dead_target]) == 2


def test_missing_file_and_bad_chunk_exit_2(fake_server, fixtures_dir, tmp_path, capsys):
    assert cli.main(["assess", str(tmp_path / "none.wav"), "--target", fake_server.target]) == 2
    assert "error: no such audio file" in capsys.readouterr().err
    assert cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target,
                     "--chunk-ms", "5"]) == 2
    assert "chunk_ms" in capsys.readouterr().err


def test_capabilities_text_and_json(fake_server, capsys):
    assert cli.main(["capabilities", "--target", fake_server.target]) == 0
    assert "LINEAR16, FLAC, OGG_OPUS, WAV" in capsys.readouterr().out
    assert cli.main(["capabilities", "--target", fake_server.target, "--json"]) == 0
    caps = json.loads(capsys.readouterr().out)
    assert caps["engine"]["scorers"] == ["gop", "mlp"] and caps["limits"]["max_concurrent_streams"] == 64


def test_eval_without_the_server_extra_exits_2(monkeypatch, capsys):
    def no_engine(name, package=None):
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(cli.importlib, "import_module", no_engine)
    assert cli.main(["eval", "--dataset", "x"]) == 2
    assert "error: 'saywell eval' needs the server extra: pip install 'saywell[server]'" in capsys.readouterr().err
    assert cli.main(["train"]) == 2
    assert "'saywell train' needs the server extra" in capsys.readouterr().err


def test_engine_commands_get_every_remaining_argument(monkeypatch):
    seen = {}

    def fake_import(name, package=None):
        return types.SimpleNamespace(main=lambda argv: seen.setdefault(name, argv) and 0)

    monkeypatch.setattr(cli.importlib, "import_module", fake_import)
    assert cli.main(["eval", "--split", "test", "-v", "--help"]) == 0
    assert cli.main(["bench", "--streams", "8"]) == 0
    assert seen == {"saywell.engine.offline.evaluation": ["--split", "test", "-v", "--help"],
                    "saywell.client.bench": ["--streams", "8"]}


def test_bench_missing_is_not_available(monkeypatch, capsys):
    def no_bench(name, package=None):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(cli.importlib, "import_module", no_bench)
    assert cli.main(["bench"]) == 2
    assert "not available in this version" in capsys.readouterr().err


def test_cli_import_pulls_neither_torch_nor_engine_nor_server():
    code = (
        "import sys, saywell.client.cli, saywell.client\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'saywell.engine',"
        " 'saywell.server', 'matplotlib')))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_events_prints_each_response_as_one_json_line(fake_server, fixtures_dir, capsys):
    code = cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target, "--events"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    kinds = [next(k for k in e if k != "client_request_id") for e in events]
    assert kinds == ["speech_event", "interim_result", "speech_event", "utterance", "summary"]
    assert events[1]["interim_result"]["provisional_words"][0]["start_ms"] == 400, "int64 as a JSON number"
    assert fake_server.servicer.stream_requests[0].config.interim_results is True
    assert cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target, "--events",
                     "--json"]) == 2
    assert "choose one" in capsys.readouterr().err


def test_scale_100_puts_json_scores_on_0_to_100(fake_server, fixtures_dir, capsys):
    args = ["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target, "--json"]
    assert cli.main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli.main(args + ["--scale", "100"]) == 0
    scaled = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "fluency", "total"):
        assert scaled["utterances"][0]["scores"][key] == pytest.approx(10 * plain["utterances"][0]["scores"][key])
    assert scaled["summary"]["mean_total"] == pytest.approx(10 * plain["summary"]["mean_total"])
    assert cli.main(["assess", str(fixtures_dir / "fox.wav"), "--target", fake_server.target, "--scale", "100"]) == 2
    assert "applies to --json and --events" in capsys.readouterr().err
