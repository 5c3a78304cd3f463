import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LiveHypothesis } from '../src/live-hypothesis.js';

let nextIndex = 0;
const word = (text) => ({
  word_index: nextIndex++, word: text, start_ms: 0, end_ms: 0, accuracy: 9, needs_improvement: false,
});
const words = (text) => (text ? text.split(' ').map(word) : []);
const interim = (utterance, stable, provisional) => ({
  event: 'interim_result',
  interim_result: { utterance_index: utterance, stable_words: words(stable), provisional_words: words(provisional) },
});
const final = (utterance) => ({ event: 'utterance', utterance: { utterance_index: utterance, words: [] } });

test('a shorter provisional tail replaces a longer one: no stale "so so" (the bug the rule fixes)', () => {
  const live = new LiveHypothesis();
  live.apply(interim(0, '', 'the quick'));
  // An interim decode of the live edge hears a run of "so"s...
  live.apply(interim(0, 'the', 'quick so so so so so'));
  assert.equal(live.text(), 'the quick so so so so so');
  // ...the next one settles two words and hears a shorter tail: the whole old tail goes.
  live.apply(interim(0, 'quick brown', 'fox'));
  assert.equal(live.text(), 'the quick brown fox');
  assert.doesNotMatch(live.text(), /so/);
});

test('stable words append and are kept; an empty tail clears the tail', () => {
  const live = new LiveHypothesis();
  live.apply(interim(0, 'my', 'brother is'));
  live.apply(interim(0, 'brother', 'is ten'));
  assert.deepEqual(live.words().map((w) => [w.word, w.stable]),
    [['my', true], ['brother', true], ['is', false], ['ten', false]]);
  live.apply(interim(0, '', ''));
  assert.equal(live.text(), 'my brother');
  live.apply(interim(0, 'is ten', 'years'));
  assert.equal(live.text(), 'my brother is ten years');
});

test("the utterance's final or error drops that utterance only", () => {
  const live = new LiveHypothesis();
  live.apply(interim(0, 'i would', 'like'));
  live.apply(interim(1, '', 'my brother'));
  assert.equal(live.text(), 'i would like my brother');
  assert.equal(live.apply(final(0)), true);
  assert.equal(live.text(), 'my brother');
  assert.deepEqual(live.utteranceWords(0), []);
  live.apply({ event: 'utterance_error', utterance_error: { utterance_index: 1, code: 'INTERNAL', message: '' } });
  assert.equal(live.text(), '');
  // A new interim result for a finished utterance index starts afresh rather than resurrecting old words.
  live.apply(interim(2, '', 'coffee'));
  assert.equal(live.text(), 'coffee');
});

test('other responses leave the hypothesis alone', () => {
  const live = new LiveHypothesis();
  live.apply(interim(0, 'the', 'quick'));
  for (const response of [
    { event: 'speech_event', speech_event: { type: 'SPEECH_EVENT_TYPE_ENDED', utterance_index: 0 } },
    { event: 'summary', summary: { utterances: 1 } },
    final(7),
  ]) {
    assert.equal(live.apply(response), false);
  }
  assert.equal(live.text(), 'the quick');
});
