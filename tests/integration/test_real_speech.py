"""Real learner speech from speechocean762, read from ../shared/data when it is beside the repository."""
import pathlib

import numpy as np
import pytest

from saywell.client import SaywellClient, load_audio

CORPUS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speechocean762" / "train"
pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def corpus():
    if not (CORPUS / "labels.jsonl").exists():
        pytest.skip(f"speechocean762 not present at {CORPUS}: real learner speech is only available beside the repo")
    from saywell.engine.offline.dataset import load_corpus, speaker_folds

    return speaker_folds(load_corpus(CORPUS), 5, 762)[0]  # the validation fold: never calibrated on


def test_well_rated_learners_outscore_poorly_rated_ones(server, corpus):
    good = [u for u in corpus if u.scores["accuracy"] >= 9][:5]
    poor = [u for u in corpus if u.scores["accuracy"] <= 4][:5]
    assert len(good) == 5 and len(poor) == 5

    def accuracy(utterance) -> float:
        with SaywellClient(server.target) as client:
            response = client.assess_source(load_audio(utterance.audio_path), reference_text=utterance.text)
        assessment = response.assessment
        assert len(assessment.words) == len(utterance.words)
        return assessment.scores.accuracy

    good_scores, poor_scores = [accuracy(u) for u in good], [accuracy(u) for u in poor]
    assert np.mean(good_scores) > np.mean(poor_scores) + 1.0, (good_scores, poor_scores)
