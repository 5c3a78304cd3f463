"""The live-hypothesis rule of the contract (InterimResult): stable words append, the provisional tail is
replaced whole, the final supersedes both."""
from saywell.client.live import LiveHypothesis
from saywell.v1 import assessment_pb2 as pb


def interim(index=0, stable=(), provisional=(), first=0):
    words = [pb.InterimWord(word_index=first + i, word=w) for i, w in enumerate(list(stable) + list(provisional))]
    return pb.StreamAssessResponse(interim_result=pb.InterimResult(
        utterance_index=index, stable_words=words[:len(stable)], provisional_words=words[len(stable):]))


def shown(live: LiveHypothesis, index=0) -> str:
    return " ".join(w.word for w in live.words(index))


def test_a_hallucinated_tail_is_withdrawn_by_the_next_shorter_update():
    """Seen on learner speech: one interim decode heard eleven words "so"; later decodes reached fewer words.
    With per-word results a client kept "... turn upward so so" until the final; the whole-tail rule cannot."""
    live = LiveHypothesis()
    live.on_response(interim(stable=["we", "turn"], provisional=["upward"] + ["so"] * 8))
    assert shown(live) == "we turn upward " + " ".join(["so"] * 8)
    live.on_response(interim(stable=["upward"], provisional=["so", "we"], first=2))
    assert shown(live) == "we turn upward so we", "the eight-word tail is replaced, not overlaid"
    live.on_response(interim(provisional=[], first=3))
    assert shown(live) == "we turn upward", "an empty tail clears it"


def test_stable_words_from_a_segment_keep_the_tail_sent_with_them():
    live = LiveHypothesis()
    live.on_response(interim(provisional=["i", "would", "like"]))
    live.on_response(interim(stable=["i", "would"], provisional=["like", "a"]))
    assert shown(live) == "i would like a"
    assert [w.word_index for w in live.words(0)] == [0, 1, 2, 3]


def test_the_final_or_an_error_supersedes_the_utterance_and_others_stay():
    live = LiveHypothesis()
    live.on_response(interim(0, stable=["hello"]))
    live.on_response(interim(1, provisional=["world"]))
    live.on_response(pb.StreamAssessResponse(utterance=pb.UtteranceAssessment(utterance_index=0)))
    assert shown(live, 0) == "" and shown(live, 1) == "world"
    live.on_response(pb.StreamAssessResponse(utterance_error=pb.UtteranceError(utterance_index=1)))
    assert shown(live, 1) == ""
