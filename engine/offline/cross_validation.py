"""Training loop, speaker-disjoint cross-validation and the model card of the trained scorer."""
from __future__ import annotations

import dataclasses
import datetime
import random

import numpy as np

from saywell.engine.features.model_inputs import SENTENCE_SCALARS, WORD_SCALARS
from saywell.engine.features.phone_probe import PhoneProbe, with_probe_scalars
from saywell.engine.offline.items import TrainingItem, matched_words, recognised_word_labels, split_by_speaker
from saywell.engine.scorers.equating import fit_equating
from saywell.engine.scorers.flags import DEFAULT_SENSITIVITY, fit_thresholds, threshold_at, threshold_for_precision
from saywell.engine.scorers.network import (SENTENCE_TARGETS, WORD_TARGETS, MultiTaskScorer, NetworkConfig, pad_batch,
                                            save_network)
from saywell.engine.scorers.word_trees import WordTrees, fit_probe, fit_word_trees, word_trees_path

BATCH = 32
PATIENCE = 10
LEARNING_RATE = 3e-4
WEIGHT_DECAY = 1e-2
EARLY_STOP_SHARE = 0.12  # of the training speakers, held out to pick the epoch
# Word accuracy, stress, total. Stress varies little (most words 10), so its squared errors are tiny and its
# head learned almost nothing at weight 1; at 10, closed-mode stress PCC 0.232 -> 0.245 in cross-validation.
WORD_LOSS_WEIGHTS = (1.0, 10.0, 1.0)
# Word scores are the mean of the network's and the word trees' (engine/word_trees.py). Measured in closed-mode
# cross-validation against the 3-seed network alone: accuracy 0.660 -> 0.674, stress 0.266 -> 0.300, total
# 0.666 -> 0.682; open mode: accuracy 0.443 -> 0.455, total 0.453 -> 0.466. Shares of 0.3 and 0.7 came within 0.003.
TREE_SHARE = 0.5


def fit_trees(items: list[TrainingItem], probe: PhoneProbe | None = None) -> WordTrees:
    return fit_word_trees([i.inputs for i in items], [i.word_targets for i in items], probe)


def network_view(items: list[TrainingItem], probe: PhoneProbe | None) -> list[TrainingItem]:
    """The items as the network sees them: the phone probe's word features appended to the word scalars.
    Measured in closed-mode cross-validation (1 seed): network word accuracy 0.653 -> 0.699, total 0.658 ->
    0.707, sentence total 0.826 -> 0.841; blended with the trees, word accuracy 0.699 -> 0.713."""
    if probe is None:
        return items
    return [dataclasses.replace(i, inputs=with_probe_scalars(i.inputs, probe)) for i in items]


def blend_words(network_words: list[np.ndarray], trees: WordTrees | None, items: list[TrainingItem],
                share: float = TREE_SHARE) -> list[np.ndarray]:
    if trees is None:
        return network_words
    return [(1 - share) * w + share * trees.predict(i.inputs) for w, i in zip(network_words, items)]


def _config(items: list[TrainingItem], dropout: float = 0.3) -> NetworkConfig:
    first = items[0].inputs
    return NetworkConfig(word_scalar_dim=first.word_scalars.shape[1], encoder_dim=first.word_encoder.shape[1],
                         sentence_dim=first.sentence.shape[0], dropout=dropout)


def _tensors(items: list[TrainingItem], config: NetworkConfig):
    import torch

    scalars, encoder, mask, sentence = pad_batch([i.inputs for i in items], (config.word_scalar_dim, config.encoder_dim))
    word_targets = torch.full((len(items), scalars.shape[1], len(WORD_TARGETS)), float("nan"))
    for row, item in enumerate(items):
        word_targets[row, :len(item.word_targets)] = torch.from_numpy(item.word_targets)
    sentence_targets = torch.from_numpy(np.stack([i.sentence_targets for i in items]))
    return scalars, encoder, mask, sentence, word_targets, sentence_targets


def _loss(model, batch):
    import torch

    scalars, encoder, mask, sentence, word_targets, sentence_targets = batch
    words, sentences = model(scalars, encoder, mask, sentence)
    known = ~torch.isnan(word_targets)
    errors = (words - torch.nan_to_num(word_targets)) ** 2 * torch.tensor(WORD_LOSS_WEIGHTS)
    word_loss = errors[known].mean() if known.any() else words.sum() * 0
    return word_loss + ((sentences - sentence_targets) ** 2).mean()


def predict(model, items: list[TrainingItem]) -> tuple[list[np.ndarray], np.ndarray]:
    import torch

    model.eval()
    words, sentences = [], []
    with torch.inference_mode():
        for start in range(0, len(items), 64):
            chunk = items[start:start + 64]
            w, s = model(*_tensors(chunk, model.config)[:4])
            words.extend(w[i, :len(item.word_targets)].numpy() for i, item in enumerate(chunk))
            sentences.append(s.numpy())
    return words, np.concatenate(sentences) if sentences else np.zeros((0, len(SENTENCE_TARGETS)))


def train_network(train: list[TrainingItem], stop: list[TrainingItem], epochs: int, seed: int,
                  dropout: float = 0.3):
    """Adam on word + sentence MSE; keeps the epoch with the lowest loss on the early-stopping speakers."""
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    config = _config(train, dropout)
    model = MultiTaskScorer(config)
    model.set_normalization(np.concatenate([i.inputs.word_scalars for i in train]),
                            np.concatenate([i.inputs.word_encoder for i in train]),
                            np.stack([i.inputs.sentence for i in train]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    stop_batch = _tensors(stop, config)
    best = (float("inf"), None, 0)
    order = list(range(len(train)))
    for epoch in range(epochs):
        model.train()
        random.shuffle(order)
        for start in range(0, len(order), BATCH):
            batch = _tensors([train[i] for i in order[start:start + BATCH]], config)
            optimizer.zero_grad()
            _loss(model, batch).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            loss = float(_loss(model, stop_batch))
        if loss < best[0]:
            best = (loss, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
        elif epoch - best[2] >= PATIENCE:
            break
    model.load_state_dict(best[1])
    model.eval()
    return model, best[2]


def pcc(pred, true) -> float | None:
    p, t = np.asarray(pred, float), np.asarray(true, float)
    if len(p) < 3 or p.std() == 0 or t.std() == 0:
        return None
    return float(np.corrcoef(p, t)[0, 1])


def labelled_word_predictions(item: TrainingItem, word_preds: np.ndarray) -> np.ndarray:
    """Per labelled word: its own prediction (closed) or those of the scored words it matches in time (open)."""
    if item.label_spans is None:
        return np.zeros((0, len(WORD_TARGETS)))
    if len(item.word_spans) == len(item.label_spans) and item.word_spans == item.label_spans:
        return word_preds
    out = np.zeros((len(item.label_spans), len(WORD_TARGETS)))
    for j, span in enumerate(item.label_spans):
        hits, weights = matched_words(span, item.word_spans)
        if hits:
            out[j] = weights @ word_preds[hits]
    return out


def recognised_word_metrics(items: list[TrainingItem], words: list[np.ndarray], labels: dict) -> dict:
    """Word correlations per scored word against the labelled words it overlaps (MultiPA's open-mode protocol,
    `recognised_word_labels`); in closed mode the same as per labelled word."""
    scored = [(w, recognised_word_labels(i.word_spans, i.label_spans, labels[i.utt]))
              for i, w in zip(items, words) if i.label_spans is not None and len(w)]
    if not scored:
        return {}
    heard, said = np.concatenate([w for w, _ in scored]), np.concatenate([t for _, t in scored])
    return {f"recognised_word_{t}": pcc(heard[:, k], said[:, k]) for k, t in enumerate(WORD_TARGETS)}


def fold_metrics(items: list[TrainingItem], words: list[np.ndarray], sentences: np.ndarray, labels: dict,
                 threshold: float) -> dict:
    metrics = {f"sentence_{t}": pcc(sentences[:, k], [i.sentence_labels[k] for i in items])
               for k, t in enumerate(SENTENCE_TARGETS)}
    pred_rows, true_rows = [], []
    for item, w in zip(items, words):
        predicted = labelled_word_predictions(item, w)
        if len(predicted):
            pred_rows.append(predicted)
            true_rows.append(labels[item.utt])
    pred, true = np.concatenate(pred_rows), np.concatenate(true_rows)
    metrics.update({f"word_{t}": pcc(pred[:, k], true[:, k]) for k, t in enumerate(WORD_TARGETS)})
    metrics.update(recognised_word_metrics(items, words, labels))
    flagged = pred[:, 0] < threshold
    needs = true[:, 0] < 10
    metrics["flag_precision"] = float(needs[flagged].mean()) if flagged.any() else None
    metrics["flag_recall"] = float(flagged[needs].mean()) if needs.any() else None
    return metrics


def _stop_threshold(model, trees: WordTrees | None, stop: list[TrainingItem], labels: dict,
                    probe: PhoneProbe | None = None) -> float:
    words = blend_words(predict(model, network_view(stop, probe))[0], trees, stop)
    pred = np.concatenate([labelled_word_predictions(i, w)[:, 0] for i, w in zip(stop, words) if i.label_spans])
    true = np.concatenate([labels[i.utt][:, 0] for i, w in zip(stop, words) if i.label_spans])
    return threshold_for_precision(pred, true < 10, 0.9)


def cross_validate(fold_items: list[list[TrainingItem]], epochs: int, seed: int, seeds: int = 1,
                   with_trees: bool = True, with_probe: bool = True) -> dict:
    from tqdm import tqdm

    labels = {i.utt: i.labels for fold in fold_items for i in fold if i.label_spans is not None}
    per_fold = []
    out_of_fold: dict[int, list] = {}
    out_of_fold_sentences: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in tqdm(range(len(fold_items)), desc="cross-validation", unit="fold"):
        train_all = [i for j, f in enumerate(fold_items) if j != k for i in f]
        test = [i for i in fold_items[k] if i.utt in labels]
        fitted, stop = fit_scorer(train_all, epochs, seed, seeds, with_trees, with_probe, split_seed=seed + k)
        threshold = float(np.mean([_stop_threshold(m, fitted.trees, stop, labels, fitted.probe)
                                   for m in fitted.models]))
        words, sentences = fitted.predict(test)
        metrics = fold_metrics(test, words, sentences, labels, threshold)
        metrics.update({"n_test": len(test), "epochs": fitted.best_epochs, "flag_threshold": threshold})
        per_fold.append(metrics)
        out_of_fold[k] = [(labelled_word_predictions(i, w)[:, 0], labels[i.utt][:, 0]) for i, w in zip(test, words)]
        out_of_fold_sentences[k] = (sentences, np.stack([i.sentence_labels for i in test]))
    return {"folds": per_fold, "summary": summarize(per_fold), "out_of_fold": out_of_fold,
            "out_of_fold_sentences": out_of_fold_sentences}


def summarize(per_fold: list[dict]) -> dict:
    """Mean and std over folds; a metric no fold could compute (e.g. precision with nothing flagged) is None."""
    keys = [k for k in per_fold[0] if k.startswith(("sentence_", "word_", "recognised_word_", "flag_p", "flag_r"))]
    summary = {}
    for key in keys:
        values = [m[key] for m in per_fold if m[key] is not None]
        summary[key] = ({"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}
                        if values else None)
    return summary


def out_of_fold_thresholds(result: dict, exclude_fold: int | None) -> list[list[float]]:
    """Flag thresholds from the out-of-fold predictions of the training folds (every fold but `exclude_fold`):
    thousands of words, not a few."""
    pairs = [p for k, rows in result["out_of_fold"].items() if k != exclude_fold for p in rows]
    predicted = np.concatenate([p for p, _ in pairs])
    return fit_thresholds(predicted, np.concatenate([t for _, t in pairs]) < 10)


@dataclasses.dataclass(frozen=True)
class FittedScorer:
    """The networks of an ensemble, the word trees and the phone probe, fitted as the shipped checkpoint is."""
    models: list
    best_epochs: list[int]
    trees: WordTrees | None
    probe: PhoneProbe | None
    train_utterances: int
    stop_utterances: int

    def predict(self, items: list[TrainingItem]) -> tuple[list[np.ndarray], np.ndarray]:
        """Per item its word scores (networks averaged, blended with the trees) and the sentence scores."""
        predictions = [predict(m, network_view(items, self.probe)) for m in self.models]
        words = blend_words([np.mean([p[0][n] for p in predictions], axis=0) for n in range(len(items))],
                            self.trees, items)
        return words, np.mean([p[1] for p in predictions], axis=0)


def out_of_fold_equating(result: dict, exclude_fold: int | None) -> list[dict]:
    """The sentence scores' equating (engine/scorers/equating.py), fitted on the out-of-fold predictions of every
    fold but `exclude_fold`."""
    kept = [pair for k, pair in result["out_of_fold_sentences"].items() if k != exclude_fold]
    return fit_equating(np.concatenate([p for p, _ in kept]), np.concatenate([t for _, t in kept]), SENTENCE_TARGETS)


def fit_scorer(train_all: list[TrainingItem], epochs: int, seed: int, seeds: int = 1, with_trees: bool = True,
               with_probe: bool | None = None, split_seed: int | None = None
               ) -> tuple[FittedScorer, list[TrainingItem]]:
    """`seeds` networks (an ensemble; network seeds `seed + 100 * s`) on all of train_all, early-stopped on a share
    of its speakers (drawn with `split_seed`, default `seed`), and the word trees fitted on the same speakers as
    the networks; the phone probe goes with the trees unless `with_probe` says otherwise. Returns the scorer and
    its early-stopping items (cross-validation fits each fold's flag threshold on them)."""
    train, stop = split_by_speaker(train_all, EARLY_STOP_SHARE, seed if split_seed is None else split_seed)
    with_probe = with_trees if with_probe is None else with_probe
    probe = fit_probe([i.inputs for i in train_all]) if with_probe else None
    runs = [train_network(network_view(train, probe), network_view(stop, probe), epochs, seed + 100 * s)
            for s in range(seeds)]
    trees = fit_trees(train, probe) if with_trees else None
    return FittedScorer([m for m, _ in runs], [e for _, e in runs], trees, probe, len(train), len(stop)), stop


def fit_final(train_all: list[TrainingItem], epochs: int, seed: int, path, mode: str, thresholds: list,
              seeds: int = 1, with_trees: bool = True, target_asr: str | None = None,
              equating: list[dict] | None = None) -> tuple[dict, FittedScorer]:
    """The shipped checkpoint (`fit_scorer`), and the word trees beside it (`word_trees_path(path)`)."""
    fitted, _ = fit_scorer(train_all, epochs, seed, seeds, with_trees)
    meta = {"version": f"trained-{mode}-{datetime.date.today().isoformat()}", "mode": mode,
            "best_epoch": fitted.best_epochs, "flag_thresholds": thresholds, "sentence_equating": equating,
            "train_utterances": fitted.train_utterances, "stop_utterances": fitted.stop_utterances,
            "seed": seed, "word_scalars": list(WORD_SCALARS), "sentence_scalars": list(SENTENCE_SCALARS),
            "target_asr": target_asr if mode == "open" else None, "phone_probe": fitted.probe is not None}
    if with_trees:
        meta["tree_share"] = TREE_SHARE
        fitted.trees.save(word_trees_path(path), {"mode": mode, "word_scalars": list(WORD_SCALARS),
                                                  "sentence_scalars": list(SENTENCE_SCALARS)})
    save_network(fitted.models, path, meta)
    return meta, fitted


def confirmation_metrics(fitted: FittedScorer, items: list[TrainingItem], thresholds: list) -> dict:
    """The fitted scorer on the confirmation speakers' items (`dataset.confirmation_speakers`), flags at the
    default sensitivity of `thresholds`. Look at it only to confirm a change chosen on cross-validation."""
    labels = {i.utt: i.labels for i in items if i.label_spans is not None}
    test = [i for i in items if i.utt in labels]
    words, sentences = fitted.predict(test)
    threshold = threshold_at(thresholds, DEFAULT_SENSITIVITY)
    return fold_metrics(test, words, sentences, labels, threshold) | {
        "n_test": len(test), "speakers": len({i.speaker for i in test}), "flag_threshold": threshold}


TARGETS_TEXT = {"stress-experts": "the official scores, except word stress, which is the mean of the five experts",
                "experts": "the mean of the five experts", "official": "the official scores"}


def model_card(report: dict) -> str:
    lines = ["# saywell trained scorer — model card", "",
             f"Date: {report['date']}. Data: speechocean762 train split ({report['utterances']} utterances, "
             f"{report['failed']} failed feature extraction), {report['folds']} speaker-disjoint folds (seed "
             f"{report['seed']}). Shipped checkpoints are trained on every fold except fold "
             f"{report['validation_fold']}, which stays a validation fold for `saywell eval --fold "
             f"{report['validation_fold']}`. Cross-validation leaves out the "
             f"{report.get('confirmation_utterances_left_out', 0)} utterances of the confirmation speakers (half of "
             "fold 0's speakers, `saywell eval --confirmation`), kept out of every choice.", "",
             f"Features: the engine's own stages with the server's default decoding (Whisper {report['asr']} "
             f"greedy on a 10 s window; open mode's target ASR: {report['target_asr'] or 'none'}). Per word: "
             "pocketsphinx GOP statistics, phone-loop agreement and phone edit distance, timing and pauses, "
             "agreement between the recognised transcript and the assessed words (match, probability, spelling "
             "distance, time offset: MultiPA's word-alignment features), the assessed word's own ASR "
             "probability, canonical-stress prominence, the word's pitch, loudness and length against the utterance "
             "and its stressed vowel's against its other vowels, and the Whisper encoder pooled over the word. Per "
             "utterance: pauses, rates, pitch and intensity statistics, and the encoder's mean and spread. "
             "The network's word tokens also carry the phone probe's word features (below). "
             "Network: 2-layer transformer over words (d=96), word heads (accuracy, stress, total), attention-pooled "
             "sentence heads (accuracy, fluency, prosody, total); an ensemble of "
             f"{report.get('seeds', 1)} seeds. Targets: {TARGETS_TEXT[report['targets']]}; MSE with word stress "
             "weighted "
             f"{WORD_LOSS_WEIGHTS[1]:g}×; AdamW (lr {LEARNING_RATE:g}, weight decay {WEIGHT_DECAY:g}, dropout 0.3); "
             "early stopping on held-out training speakers. In open mode, a labelled word that no assessed word "
             "overlaps in time takes the nearest assessed word's scores.", "",
             f"Word scores blend the network's with gradient-boosted trees' (trees' share {TREE_SHARE:g}; "
             "`word-trees-{mode}.npz`, read with numpy). The trees see each word's scalars, its neighbours' GOP, the "
             "utterance scalars, 16 principal components of the word's encoder frames, and a phone probe's goodness of "
             "the word's phones (a softmax over 39 phones from the encoder frames pooled per aligned phone, fitted "
             "on the training folds' alignments; `engine/phone_probe.py`) with its vowel-stress head (does the "
             "vowel the lexicon stresses sound the most stressed of the word's vowels). Their stress is a "
             "classifier of \"at least two of the five experts heard a stress error\", reported as the expected "
             "label on the 10/5 scale.", "",
             "Sentence scores are equated to the experts' spread (`sentence_equating` in the checkpoint, "
             "`engine/scorers/equating.py`): a linear map taking the mean and standard deviation of the training "
             "folds' out-of-fold predictions to those of the experts' scores, so the top of the scale is not pulled "
             "toward the middle. Correlations below are the network's before the map, which leaves them unchanged "
             "but for the clip to 0..10.", "",
             "## Cross-validation, CV (Pearson correlation, mean ± std over folds; not a test-split result)", "",
             "| mode | " + " | ".join(f"sent. {t}" for t in SENTENCE_TARGETS) + " | "
             + " | ".join(f"word {t}" for t in WORD_TARGETS) + " | flag precision | flag recall |",
             "|---|" + "---|" * (len(SENTENCE_TARGETS) + len(WORD_TARGETS) + 2)]
    for mode, result in report["modes"].items():
        s = result["summary"]
        cells = [f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" if s.get(k) else "— (nothing flagged)" for k in
                 [f"sentence_{t}" for t in SENTENCE_TARGETS] + [f"word_{t}" for t in WORD_TARGETS]
                 + ["flag_precision", "flag_recall"]]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    confirmed = {mode: result["confirmation"] for mode, result in report["modes"].items() if "confirmation" in result}
    if confirmed:
        lines += ["", "## Confirmation speakers (the shipped models; not CV, not the test split)", "",
                  "The confirmation speakers' utterances, which no fold and no shipped model trains on "
                  "(`dataset.confirmation_speakers`); flags at the default sensitivity.", "",
                  "| mode | speakers | utterances | " + " | ".join(f"sent. {t}" for t in SENTENCE_TARGETS) + " | "
                  + " | ".join(f"word {t}" for t in WORD_TARGETS) + " | flag precision | flag recall |",
                  "|---|" + "---|" * (len(SENTENCE_TARGETS) + len(WORD_TARGETS) + 4)]
        for mode, metrics in confirmed.items():
            cells = [f"{metrics[k]:.3f}" if metrics.get(k) is not None else "—" for k in
                     [f"sentence_{t}" for t in SENTENCE_TARGETS] + [f"word_{t}" for t in WORD_TARGETS]
                     + ["flag_precision", "flag_recall"]]
            lines.append(f"| {mode} | {metrics['speakers']} | {metrics['n_test']} | " + " | ".join(cells) + " |")
    if "open" in report["modes"] and report["modes"]["open"]["summary"].get("recognised_word_accuracy"):
        s = report["modes"]["open"]["summary"]
        lines += ["", "Open mode's word columns the way MultiPA's evaluation counts them (the protocol behind its "
                  "published open-response numbers): per recognised word, against the mean of the labelled words "
                  "it overlaps, or against the scales' bottom (0 / 5 / 1) when it overlaps none. The table above "
                  "counts per labelled word instead, each taking the overlap-weighted scores of the recognised "
                  "words it overlaps.", "",
                  "| mode | " + " | ".join(f"word {t}" for t in WORD_TARGETS) + " |", "|---|" + "---|" * len(WORD_TARGETS),
                  "| open, per recognised word | " + " | ".join(
                      f"{s[f'recognised_word_{t}']['mean']:.3f} ± {s[f'recognised_word_{t}']['std']:.3f}"
                      for t in WORD_TARGETS) + " |"]
    lines += ["", "## Limits", "",
              "- Word stress is the weakest aspect: 99% of the official stress labels are 10, and most of the rest "
              "sit on badly mispronounced short words, so its correlation rests on about 30 words per fold.",
              "- Flags follow precision targets measured out of fold. Where a target is unreachable, no word is "
              "flagged rather than many wrongly.",
              "- Numbers are cross-validated (CV) on the train split, not test-split results: CV has overstated held-out PCC by about 0.05 (closed) and 0.10 (open) on speechocean762's test split, measured independently for the shipped models (README, Evaluation results). Compare CV with CV only."]
    return "\n".join(lines) + "\n"
