// Text for the terminal: the live hypothesis, final assessments and the summary.

const ANSI = { dim: '\x1b[2m', red: '\x1b[31m', bold: '\x1b[1m', reset: '\x1b[0m' };
const CAUSES = {
  ENDPOINT_CAUSE_SILENCE: 'silence',
  ENDPOINT_CAUSE_MAX_LENGTH: 'max length',
  ENDPOINT_CAUSE_CLIENT_END_OF_UTTERANCE: 'client end of utterance',
  ENDPOINT_CAUSE_END_OF_STREAM: 'end of stream',
};

const seconds = (ms) => (ms / 1000).toFixed(2);
const score = (value) => value.toFixed(1);

/**
 * The live words (LiveHypothesis.words()) on one line. Flagged words are marked "*"; with colour they are red and
 * the provisional tail is dim, without it the tail is in brackets.
 */
export function renderLive(words, { color = false } = {}) {
  const paint = (style, text) => (color ? `${ANSI[style]}${text}${ANSI.reset}` : text);
  const show = (word) => {
    const text = word.needs_improvement ? `${word.word}*` : word.word;
    return word.needs_improvement ? paint('red', text) : text;
  };
  const stable = words.filter((word) => word.stable).map(show);
  const tail = words.filter((word) => !word.stable).map(show);
  if (tail.length === 0) return stable.join(' ');
  const shownTail = color ? paint('dim', tail.join(' ')) : `[${tail.join(' ')}]`;
  return [...stable, shownTail].join(' ');
}

/**
 * What a phone recogniser heard instead of the expected phones of a word, e.g. ["said S, not TH", "left out D"]:
 * the phones whose `heard` list starts with another phone ("SIL": silence, the phone was left out).
 */
export function diagnose(word) {
  return word.phones
    .filter((phone) => phone.heard.length > 0 && phone.heard[0].phone !== phone.phone)
    .map((phone) =>
      phone.heard[0].phone === 'SIL' ? `left out ${phone.phone}` : `said ${phone.heard[0].phone}, not ${phone.phone}`);
}

/** A final UtteranceAssessment as lines: heading, sentence scores, then one line per word. */
export function renderAssessment(utterance, { color = false } = {}) {
  const paint = (style, text) => (color ? `${ANSI[style]}${text}${ANSI.reset}` : text);
  const { scores } = utterance;
  const cause = CAUSES[utterance.cause] ?? utterance.cause;
  const sentence = [`accuracy ${score(scores.accuracy)}`, `fluency ${score(scores.fluency)}`,
    `prosody ${score(scores.prosody)}`, `total ${score(scores.total)}`];
  // `completeness` is a proto3 optional: present (closed mode) or absent, never defaulted.
  if (scores.completeness !== undefined) sentence.push(`completeness ${score(scores.completeness)}`);
  const span = `${seconds(utterance.start_ms)}-${seconds(utterance.end_ms)} s`;
  const lines = [
    paint('bold', `utterance ${utterance.utterance_index} (${span}, ${cause}): "${utterance.transcript}"`),
    `  ${sentence.join('  ')}`,
  ];
  const width = Math.max(...utterance.words.map((word) => word.word.length), 4);
  for (const word of utterance.words) {
    const accuracy = score(word.accuracy).padStart(4);
    let line = `  ${word.word.padEnd(width)}  accuracy ${accuracy}  total ${score(word.total).padStart(4)}`;
    if (word.error_type !== 'WORD_ERROR_TYPE_NONE') {
      line += `  ${word.error_type.replace('WORD_ERROR_TYPE_', '').toLowerCase()}`;
    }
    if (word.needs_improvement) {
      const diagnosis = diagnose(word);
      line += paint('red', `  needs work${diagnosis.length ? `: ${diagnosis.join('; ')}` : ''}`);
    }
    lines.push(line);
  }
  return lines;
}

export function renderSummary(summary) {
  return `summary: ${summary.utterances} utterance(s), ${summary.utterance_errors} error(s), ` +
    `${seconds(summary.audio_ms)} s of audio, mean total ${score(summary.mean_total)}`;
}
