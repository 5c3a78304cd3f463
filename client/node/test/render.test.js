import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diagnose, renderAssessment, renderLive } from '../src/render.js';

const phone = (expected, ...heard) => ({ phone: expected, start_ms: 0, end_ms: 0, goodness: 0, accuracy: 1,
  heard: heard.map((name) => ({ phone: name, share: 1 / heard.length })) });

test('the heard diagnosis names the phone said instead, or the one left out', () => {
  const word = { word: 'think', phones: [phone('TH', 'S', 'TH'), phone('IH', 'IH'), phone('NG', 'N'), phone('K', 'SIL'),
    phone('D')] };
  assert.deepEqual(diagnose(word), ['said S, not TH', 'said N, not NG', 'left out K']);
});

test('an assessment: sentence scores, completeness in closed mode, flagged words with their diagnosis', () => {
  const word = (text, needsImprovement, errorType, phones = []) => ({
    word: text, start_ms: 0, end_ms: 0, accuracy: 4.25, stress: 9, total: 5, error_type: errorType,
    needs_improvement: needsImprovement, phones,
  });
  const lines = renderAssessment({
    utterance_index: 2, start_ms: 1200, end_ms: 2950, cause: 'ENDPOINT_CAUSE_SILENCE', transcript: 'I sink so',
    scores: { accuracy: 7.04, fluency: 8, prosody: 8, total: 7.2, completeness: 6.7 },
    words: [word('i', false, 'WORD_ERROR_TYPE_NONE'),
      word('think', true, 'WORD_ERROR_TYPE_MISPRONUNCIATION', [phone('TH', 'S'), phone('IH', 'IH')]),
      word('so', true, 'WORD_ERROR_TYPE_OMISSION')],
  });
  assert.equal(lines[0], 'utterance 2 (1.20-2.95 s, silence): "I sink so"');
  assert.equal(lines[1], '  accuracy 7.0  fluency 8.0  prosody 8.0  total 7.2  completeness 6.7');
  assert.match(lines[2], /^ {2}i +accuracy {2}4\.3 {2}total {2}5\.0$/);
  assert.match(lines[3], /think .* mispronunciation {2}needs work: said S, not TH$/);
  assert.match(lines[4], /so .* omission {2}needs work$/);
  assert.equal(lines.length, 5);
});

test('the live line: stable words, then the provisional tail; flagged words marked', () => {
  const words = [{ word: 'the', stable: true }, { word: 'quick', stable: true, needs_improvement: true },
    { word: 'brown', stable: false }, { word: 'fox', stable: false }];
  assert.equal(renderLive(words), 'the quick* [brown fox]');
  assert.equal(renderLive(words.slice(0, 2)), 'the quick*');
  assert.equal(renderLive(words, { color: true }), 'the \x1b[31mquick*\x1b[0m \x1b[2mbrown fox\x1b[0m');
});
