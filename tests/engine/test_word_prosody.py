"""Per-word prosody: a word against its utterance, its stressed vowel against its other vowels."""
import numpy as np
import pytest

from saywell.engine.features.prosody import ProsodyTrack
from saywell.engine.features.word_prosody import WORD_PROSODY_NAMES, UtteranceLevels, word_prosody_stats
from saywell.engine.stages.alignment import AlignedPhone, AlignedWord


def phone(canonical, start, end, gop=0.0):
    return AlignedPhone(phone=canonical.rstrip("012"), canonical=canonical, start_frame=start, end_frame=end,
                        aligned_loglik=0.0, loop_loglik=0.0, gop=gop, loop_phones=())


def test_a_loud_high_word_with_its_stress_on_the_second_vowel():
    # "again" AH0 G EH1 N: frames 0..40; then a plain word "the" 40..60
    again = AlignedWord("again", 0, 40, (phone("AH0", 0, 8, -1.5), phone("G", 8, 14), phone("EH1", 14, 32, -0.2),
                                        phone("N", 32, 40)))
    the = AlignedWord("the", 40, 60, (phone("DH", 40, 46), phone("AH0", 46, 60)))
    pitch = np.full(60, 120.0)
    pitch[14:32] = 180.0  # the stressed vowel is higher
    loud = np.full(60, 60.0)
    loud[14:32] = 70.0
    track = ProsodyTrack(pitch, loud)
    levels = UtteranceLevels.of((again, the), track)
    assert levels.ms_per_phone == pytest.approx(600 / 6)
    stats = word_prosody_stats(again, track, levels)
    assert set(stats) == set(WORD_PROSODY_NAMES)
    assert stats["stressed_pitch_diff_st"] == pytest.approx(12 * np.log2(180 / 120))
    assert stats["stressed_intensity_diff_db"] == pytest.approx(10.0)
    assert stats["stressed_duration_diff_ms"] == pytest.approx(100.0)
    assert stats["primary_position"] == 1.0 and stats["stressed_vowel_gop"] == -0.2
    assert stats["vowel_gop_min"] == -1.5
    assert stats["pitch_peak_rel_st"] > stats["pitch_rel_st"] > 0
    plain = word_prosody_stats(the, track, levels)
    assert plain["pitch_rel_st"] == 0.0  # at the speaker's median pitch
    assert plain["intensity_rel_db"] < 0  # quieter than the utterance's mean, which the stressed vowel lifts
    assert plain["stressed_pitch_diff_st"] == 0.0  # one vowel: nothing to contrast


def test_silence_and_unvoiced_words_give_zeros_not_nans():
    word = AlignedWord("s", 0, 10, (phone("S", 0, 10),))
    track = ProsodyTrack(np.zeros(10), np.zeros(10))
    stats = word_prosody_stats(word, track, UtteranceLevels.of((word,), track))
    assert all(np.isfinite(v) for v in stats.values())
    assert stats["pitch_rel_st"] == 0.0 and stats["stressed_vowel_gop"] == 0.0
