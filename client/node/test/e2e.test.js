// End to end against a real saywell server: SAYWELL_TARGET=host:port (tests/client/test_node_client.py starts one).
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import grpc from '@grpc/grpc-js';
import { connect, LiveHypothesis } from '../src/index.js';

const target = process.env.SAYWELL_TARGET;
const fixture = (name) => fileURLToPath(new URL(`../../../tests/fixtures/${name}`, import.meta.url));

async function collect(responses) {
  const all = [];
  for await (const response of responses) all.push(response);
  return all;
}

describe(`a saywell server at ${target ?? '$SAYWELL_TARGET'}`, { skip: !target && 'SAYWELL_TARGET is not set' }, () => {
  let client;
  before(() => {
    client = connect(target);
  });
  after(() => client.close());

  test('capabilities: LINEAR16 and interim words', async () => {
    const capabilities = await client.capabilities();
    assert.ok(capabilities.encodings.includes('AUDIO_ENCODING_LINEAR16'));
    assert.equal(capabilities.engine.features.interim_words, true);
    assert.equal(typeof capabilities.limits.max_stream_ms, 'number'); // an int64
  });

  test('open mode: fox.wav at real-time pace, with the live hypothesis', async () => {
    const started = performance.now();
    const responses = await collect(client.streamFile(fixture('fox.wav'), { clientRequestId: 'node-fox' }));
    const elapsedMs = performance.now() - started;
    const events = responses.map((response) => response.event);
    assert.ok(elapsedMs >= 2965 * 0.95, `real-time pace: 2965 ms of audio took ${elapsedMs} ms`);
    assert.ok(responses.every((response) => response.client_request_id === 'node-fox'));

    const speech = responses.filter((response) => response.event === 'speech_event').map((r) => r.speech_event);
    assert.deepEqual(speech.map((event) => event.type), ['SPEECH_EVENT_TYPE_STARTED', 'SPEECH_EVENT_TYPE_ENDED']);
    assert.equal(speech[1].cause, 'ENDPOINT_CAUSE_END_OF_STREAM');

    assert.equal(events.filter((event) => event === 'utterance').length, 1, events.join(' '));
    const finalAt = events.indexOf('utterance');
    assert.ok(events.slice(0, finalAt).includes('interim_result'), `no interim result before the final: ${events}`);
    assert.equal(events.at(-1), 'summary');

    // The live hypothesis is shown until the final arrives, then dropped.
    const live = new LiveHypothesis();
    for (const response of responses.slice(0, finalAt)) live.apply(response);
    assert.ok(live.words().length > 0, 'an interim result with words');
    live.apply(responses[finalAt]);
    assert.equal(live.text(), '');

    const { utterance } = responses[finalAt];
    const words = utterance.words.map((word) => word.word.toLowerCase());
    assert.ok(words.includes('fox'), `words: ${words}`);
    for (const item of [utterance, ...utterance.words, ...utterance.words.flatMap((word) => word.phones)]) {
      assert.equal(typeof item.start_ms, 'number');
      assert.equal(typeof item.end_ms, 'number');
      assert.ok(item.start_ms <= item.end_ms && item.end_ms <= 3000, `${item.start_ms}-${item.end_ms}`);
    }
    assert.equal(utterance.scores.completeness, undefined, 'open mode has no completeness');
    const { summary } = responses.at(-1);
    assert.equal(summary.utterances, 1);
    assert.equal(summary.audio_ms, 2965);
  });

  test('closed mode: brother.wav with its reference text gives completeness', async () => {
    const referenceText = 'My brother is ten years old';
    const responses = await collect(client.streamFile(fixture('brother.wav'), { referenceText }));
    const utterances = responses.filter((response) => response.event === 'utterance').map((r) => r.utterance);
    assert.equal(utterances.length, 1);
    const [utterance] = utterances;
    assert.equal(utterance.reference_text, referenceText);
    assert.deepEqual(utterance.words.map((word) => word.word.toLowerCase()), referenceText.toLowerCase().split(' '));
    assert.equal(typeof utterance.scores.completeness, 'number');
    assert.ok(utterance.scores.completeness >= 8, `completeness ${utterance.scores.completeness}`);
    assert.equal(responses.at(-1).event, 'summary');
  });

  test('leaving the loop early cancels the call and stops sending', async () => {
    const started = performance.now();
    for await (const response of client.streamFile(fixture('fox.wav'))) {
      if (response.event === 'speech_event') break; // at about 0.4 s of the 3 s file
    }
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < 1500, `the stream went on for ${elapsedMs} ms`);
  });

  test('a refused config ends the iteration with the gRPC status', async () => {
    const { limits } = await client.capabilities();
    const referenceText = 'a'.repeat(limits.max_reference_text_chars + 1);
    await assert.rejects(collect(client.streamFile(fixture('brother.wav'), { referenceText, speed: Infinity })),
      (error) => error.code === grpc.status.INVALID_ARGUMENT && /reference_text/.test(error.details));
  });
});
