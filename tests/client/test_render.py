from __future__ import annotations

import pytest
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
    assert utt["words"][2]["error_type"] == "WORD_ERROR_TYPE_OMISSION"
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


def test_hypothesis_and_capabilities_lines():
    stable = [pb.InterimWord(word="the", accuracy=9.0), pb.InterimWord(word="fox", accuracy=3.0, needs_improvement=True)]
    line = render.format_hypothesis(0, stable, [pb.InterimWord(word="jumps", accuracy=8.0)])
    assert line == f"  · u1 the fox{render.FLAG} jumps …"
    narrow = render.format_hypothesis(0, stable, [pb.InterimWord(word="jumps")], width=24)
    assert narrow.endswith("jumps …") and "the" not in narrow and "… fox" in narrow and len(narrow) <= 24
    assert render.format_hypothesis(1, stable, []) == f"  · u2 the fox{render.FLAG}"
    caps = pb.Capabilities(encodings=[pb.AUDIO_ENCODING_LINEAR16, pb.AUDIO_ENCODING_FLAC], language_codes=["en-US"],
                           engine=pb.EngineInfo(name="fake", version="1", scorers=["gop"]))
    text = render.format_capabilities(caps)
    assert "LINEAR16, FLAC" in text and "en-US" in text and "fake 1" in text


def test_flagged_phones_say_what_was_heard_instead():
    th = pb.PhoneAssessment(phone="TH", accuracy=0.4, heard=[pb.HeardPhone(phone="S", share=0.8),
                                                              pb.HeardPhone(phone="TH", share=0.2)])
    dropped = pb.PhoneAssessment(phone="D", accuracy=0.2, heard=[pb.HeardPhone(phone="SIL", share=1.0)])
    fine = pb.PhoneAssessment(phone="IH", accuracy=1.8, heard=[pb.HeardPhone(phone="IY", share=1.0)])
    assert render.diagnosis(th) == "said S, not TH" and render.diagnosis(dropped) == "D left out"
    assert render.diagnosis(fine) == "", "a phone scored acceptable is not diagnosed"
    word = pb.WordAssessment(word="think", accuracy=3.0, needs_improvement=True,
                             error_type=pb.WORD_ERROR_TYPE_MISPRONUNCIATION, phones=[th, fine])
    text = render.format_utterance(pb.UtteranceAssessment(words=[word]), phones=True)
    assert "(said S, not TH)" in text.splitlines()[3], "the flagged word names the phone heard"
    assert text.count("said S, not TH") == 2, "and so does the phone's own line"


def test_the_100_scale_scales_every_score_and_nothing_else():
    u = pb.UtteranceAssessment(start_ms=500, scores=pb.SentenceScores(accuracy=7.5, fluency=8.0, prosody=6.0,
                                                                      total=7.0, completeness=10.0),
                               words=[pb.WordAssessment(word="fox", accuracy=3.25, stress=10.0, total=4.0, phones=[
                                   pb.PhoneAssessment(phone="F", goodness=-2.5, accuracy=1.5)])])
    scaled = render.message_dict(render.on_100_scale(u))
    assert scaled["scores"] == {"accuracy": 75.0, "fluency": 80.0, "prosody": 60.0, "total": 70.0,
                                "completeness": 100.0}
    word = scaled["words"][0]
    assert (word["accuracy"], word["stress"], word["total"]) == (32.5, 100.0, 40.0)
    assert word["phones"][0]["accuracy"] == 75.0 and word["phones"][0]["goodness"] == -2.5
    assert scaled["start_ms"] == 500 and u.scores.accuracy == 7.5, "times untouched, the original unchanged"
    assert render.on_100_scale(pb.StreamSummary(mean_total=6.8)).mean_total == pytest.approx(68.0)
