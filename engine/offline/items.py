"""Training items: an utterance's model inputs with its targets, and how labelled words meet scored words.

Shared by training, cross-validation and evaluation: scored (recognised or reference) words take the labels of
the labelled words they overlap in time.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from saywell.engine.features.model_inputs import ModelInputs
from saywell.engine.offline.dataset import LabeledUtterance
from saywell.engine.scorers.network import SENTENCE_TARGETS, WORD_TARGETS


@dataclass(frozen=True)
class TrainingItem:
    utt: str
    speaker: str
    inputs: ModelInputs
    word_targets: np.ndarray  # (words, 3); NaN where a word has no label
    sentence_targets: np.ndarray  # (4,)
    word_spans: tuple[tuple[int, int], ...]  # ms, the scored words
    label_spans: tuple[tuple[int, int], ...] | None  # ms of the labelled words (force-aligned reference)
    labels: np.ndarray  # (labelled words, 3): the official word scores, for metrics
    sentence_labels: np.ndarray  # (4,): the official sentence scores, for metrics


def overlap_weights(span: tuple[int, int], others) -> tuple[list[int], np.ndarray]:
    """Indices of the spans overlapping `span` and their shares of the overlap (sum 1; empty when none)."""
    start, end = span
    overlaps = [(j, min(end, e) - max(start, s)) for j, (s, e) in enumerate(others)]
    hits = [(j, o) for j, o in overlaps if o > 0]
    if not hits:
        return [], np.zeros(0)
    weights = np.array([o for _, o in hits], float)
    return [j for j, _ in hits], weights / weights.sum()


def matched_words(span: tuple[int, int], scored) -> tuple[list[int], np.ndarray]:
    """The scored words whose scores a labelled word takes in open mode: those overlapping it in time, weighted
    by overlap; when the recogniser heard nothing there, the scored word nearest in time (empty when there are
    no scored words). Flooring such words instead made the eval's word stress meaningless: nearly every word's
    stress is 10, and the floor put the few unheard ones at the other end of the scale."""
    hits, weights = overlap_weights(span, scored)
    if hits or not len(scored):
        return hits, weights
    distances = [max(s - span[1], span[0] - e, 0) for s, e in scored]
    return [int(np.argmin(distances))], np.ones(1)


# MultiPA's open-response evaluation, which the must-beat open-mode numbers come from, runs the other way round:
# each recognised word is compared with the plain mean of the labelled words it overlaps, and a recognised word
# overlapping none (a word heard in a pause, or an extra word) with the bottom of the scales: accuracy 0, stress 5,
# total 1.
UNMATCHED_RECOGNISED_LABELS = (0.0, 5.0, 1.0)


def recognised_word_labels(spans, label_spans, labels: np.ndarray) -> np.ndarray:
    """Per scored word: the mean of the labelled words' rows it overlaps in time, or UNMATCHED_RECOGNISED_LABELS
    (MultiPA's protocol for open-mode word metrics)."""
    out = np.tile(np.asarray(UNMATCHED_RECOGNISED_LABELS, float), (len(spans), 1))
    for i, span in enumerate(spans):
        hits, _ = overlap_weights(span, label_spans)
        if hits:
            out[i] = labels[hits].mean(axis=0)
    return out


def overlap_targets(spans, label_spans, table: np.ndarray) -> np.ndarray:
    """Each scored word takes the overlap-weighted mean of the labelled words' rows it overlaps (NaN when none)."""
    targets = np.full((len(spans), len(WORD_TARGETS)), np.nan, np.float32)
    for i, span in enumerate(spans):
        hits, weights = overlap_weights(span, label_spans)
        if hits:
            targets[i] = weights @ table[hits]
    return targets


TARGET_CHOICES = {
    # Word stress from the experts' mean: 99% of the official (median) stress labels are 10, while 20% of words
    # have at least one expert hearing a stress problem. Measured in cross-validation: closed stress PCC
    # 0.208 -> 0.232, the other aspects unchanged.
    "stress-experts": {"word": ("stress",), "sentence": ()},
    "experts": {"word": WORD_TARGETS, "sentence": SENTENCE_TARGETS},
    "official": {"word": (), "sentence": ()},
}


def training_items(utterances: list[LabeledUtterance], records: dict, mode: str,
                   expert_means: dict | None = None, targets: str = "experts") -> list[TrainingItem]:
    """Training targets take the aspects `TARGET_CHOICES[targets]` names from the experts' means (when given)
    and the rest from the official scores; metrics always use the official scores."""
    from_experts = TARGET_CHOICES[targets]
    word_columns = [k for k, t in enumerate(WORD_TARGETS) if t in from_experts["word"]]
    sentence_columns = [k for k, t in enumerate(SENTENCE_TARGETS) if t in from_experts["sentence"]]
    items = []
    for u in utterances:
        record = records.get(u.utt)
        if record is None or record[mode][0] is None:
            continue
        inputs, spans = record[mode]
        closed_spans = record["closed"][1]
        label_spans = closed_spans if len(closed_spans) == len(u.words) else None
        official = np.array([[getattr(w, t) for t in WORD_TARGETS] for w in u.words], np.float32)
        official_sentence = np.array([u.scores[t] for t in SENTENCE_TARGETS], np.float32)
        word_table, sentence = official.copy(), official_sentence.copy()
        experts = (expert_means or {}).get(u.utt)
        if experts and len(experts["words"]) == len(u.words):
            expert_words = np.array([[w[t] for t in WORD_TARGETS] for w in experts["words"]], np.float32)
            expert_sentence = np.array([experts["sentence"][t] for t in SENTENCE_TARGETS], np.float32)
            word_table[:, word_columns] = expert_words[:, word_columns]
            sentence[sentence_columns] = expert_sentence[sentence_columns]
        if mode == "closed" and label_spans is not None:
            word_targets = word_table
        elif label_spans is not None:
            word_targets = overlap_targets(spans, label_spans, word_table)
        else:
            word_targets = np.full((len(spans), len(WORD_TARGETS)), np.nan, np.float32)
        items.append(TrainingItem(u.utt, u.speaker, inputs, word_targets, sentence, spans, label_spans, official,
                                  official_sentence))
    return items


def split_by_speaker(items: list[TrainingItem], share: float, seed: int) -> tuple[list, list]:
    speakers = sorted({i.speaker for i in items})
    random.Random(seed).shuffle(speakers)
    held = set(speakers[:max(1, int(len(speakers) * share))])
    return [i for i in items if i.speaker not in held], [i for i in items if i.speaker in held]
