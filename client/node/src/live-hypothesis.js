// The live hypothesis, rendered by the rule in the contract (InterimResult in assessment.proto):
// per utterance, a stable list that stable_words extend, and a provisional tail that provisional_words replace
// whole (an empty list clears it). The utterance's final assessment or error drops both.

export class LiveHypothesis {
  /** utterance_index -> {stable: InterimWord[], tail: InterimWord[]} */
  #utterances = new Map();

  /**
   * Takes any StreamAssessResponse (as loaded with oneofs: true) and returns true when the hypothesis changed.
   */
  apply(response) {
    switch (response.event) {
      case 'interim_result': {
        const { utterance_index: index, stable_words: stable, provisional_words: tail } = response.interim_result;
        const utterance = this.#utterances.get(index) ?? { stable: [], tail: [] };
        utterance.stable.push(...stable);
        utterance.tail = [...tail];
        this.#utterances.set(index, utterance);
        return true;
      }
      case 'utterance':
      case 'utterance_error':
        return this.#utterances.delete(response[response.event].utterance_index);
      default:
        return false;
    }
  }

  /** The live words: for each utterance still in progress, in order, its stable words then its tail. */
  words() {
    return [...this.#utterances.keys()]
      .sort((a, b) => a - b)
      .flatMap((index) => this.utteranceWords(index));
  }

  /** One utterance's live words, each with `stable: true|false` added. */
  utteranceWords(index) {
    const utterance = this.#utterances.get(index);
    if (!utterance) return [];
    return [
      ...utterance.stable.map((word) => ({ ...word, stable: true })),
      ...utterance.tail.map((word) => ({ ...word, stable: false })),
    ];
  }

  /** The live words as one line of text. */
  text() {
    return this.words().map((word) => word.word).join(' ');
  }
}
