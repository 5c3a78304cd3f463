from __future__ import annotations

import io
import json

from fake_saywell import canned_utterance

from saywell.client import render
from saywell.v1 import assessment_pb2 as pb

ESC = "\x1b["


def test_json_report_has_utterances_summary_and_proto_field_names():
    summary = pb.StreamSummary(utterances=1, audio_ms=2965, mean_total=6.8)
    report = json.loads(render.json_report([canned_utterance()], summary))
    assert set(report) == {"utterances", "errors", "summary"}
    (utt,) = report["utterances"]
    assert {"utterance_index", "start_ms", "end_ms", "scores", "words", "transcript"} <= set(utt)
    assert utt["scores"]["completeness"] == 7.5
    assert [w["word"] for w in utt["words"]] == ["the", "quick", "brown", "fox", "um"]
    assert utt["words"][1]["needs_improvement"] is True
    assert utt["words"][2]["error_type"] == "OMISSION"
    assert utt["words"][1]["phones"][0]["goodness"] == -0.4
    assert report["summary"] == {"utterances": 1, "utterance_errors": 0, "audio_ms": 2965, "mean_total": 6.8}
    assert isinstance(utt["start_ms"], int) and all(isinstance(w["start_ms"], int) for w in utt["words"])


def test_json_report_without_summary_computes_one():
    report = json.loads(render.json_report([canned_utterance(0), canned_utterance(1)], None))
    assert report["summary"]["utterances"] == 2
    assert abs(report["summary"]["mean_total"] - 6.8) < 1e-5


def test_human_output_without_colour_has_words_markers_and_no_escapes():
    text = render.format_utterance(canned_utterance(), color=False)
    assert ESC not in text
    assert "Utterance 1" in text and "completeness 7.5" in text and "total 6.8" in text
    lines = text.splitlines()
    assert any(line.strip().startswith("the ") and "acc  9.0" in line for line in lines)
    assert any("quick" in line and "needs work" in line and render.FLAG in line for line in lines)
    assert any("[brown]" in line and "(omitted)" in line for line in lines)
    assert any("+um" in line and "(inserted)" in line for line in lines)
    assert "0.40–0.70s" in text
    assert "goodness" not in text  # phones only on request


def test_human_output_with_colour_uses_score_colours():
    text = render.format_utterance(canned_utterance(), color=True, phones=True)
    assert f"{ESC}32mthe{ESC}0m" in text  # 9.0: green
    assert f"{ESC}31;4mquick{ESC}0m" in text  # flagged: red + underline
    assert f"{ESC}2;9m[brown]{ESC}0m" in text  # omitted: dim + struck
    assert f"{ESC}33m+um{ESC}0m" in text  # 6.5: yellow
    assert "goodness  -3.10" in text and "W " in text


def test_score_colour_thresholds():
    assert render.score_color(8.0) == render.GREEN
    assert render.score_color(7.99) == render.YELLOW
    assert render.score_color(5.0) == render.YELLOW
    assert render.score_color(4.99) == render.RED


def test_use_color_needs_a_tty_and_respects_no_color(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert render.use_color(Tty()) is True
    assert render.use_color(io.StringIO()) is False
    assert render.use_color(Tty(), no_color=True) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert render.use_color(Tty()) is False


def test_interim_word_and_capabilities_lines():
    line = render.format_word_result(pb.WordResult(word="fox", word_index=3, accuracy=3.0, needs_improvement=True))
    assert "fox" in line and render.FLAG in line and "…" in line
    caps = pb.Capabilities(encodings=[pb.LINEAR16, pb.FLAC], language_codes=["en-US"],
                           engine=pb.EngineInfo(name="fake", version="1", scorers=["gop"]))
    text = render.format_capabilities(caps)
    assert "LINEAR16, FLAC" in text and "en-US" in text and "fake 1" in text
