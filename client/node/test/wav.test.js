import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseWav } from '../src/wav.js';

const FIXTURES = new URL('../../../tests/fixtures/', import.meta.url);

/** A RIFF/WAVE file from chunks [id, body]. */
function riff(chunks) {
  const parts = chunks.flatMap(([id, body]) => {
    const header = Buffer.alloc(8);
    header.write(id, 0, 'ascii');
    header.writeUInt32LE(body.length, 4);
    return body.length % 2 ? [header, body, Buffer.alloc(1)] : [header, body];
  });
  const head = Buffer.alloc(12);
  head.write('RIFF', 0, 'ascii');
  head.writeUInt32LE(4 + parts.reduce((n, part) => n + part.length, 0), 4);
  head.write('WAVE', 8, 'ascii');
  return Buffer.concat([head, ...parts]);
}

function fmt({ tag = 1, channels = 1, rate = 16000, bits = 16, subFormat } = {}) {
  const body = Buffer.alloc(subFormat === undefined ? 16 : 40);
  body.writeUInt16LE(tag, 0);
  body.writeUInt16LE(channels, 2);
  body.writeUInt32LE(rate, 4);
  body.writeUInt32LE((rate * channels * bits) / 8, 8);
  body.writeUInt16LE((channels * bits) / 8, 12);
  body.writeUInt16LE(bits, 14);
  if (subFormat !== undefined) {
    body.writeUInt16LE(22, 16);
    body.writeUInt16LE(subFormat, 24);
  }
  return body;
}

test('the fixture fox.wav: 16 kHz mono, 2965 ms', () => {
  const wav = parseWav(readFileSync(new URL('fox.wav', FIXTURES)));
  assert.equal(wav.sampleRate, 16000);
  assert.equal(wav.channels, 1);
  assert.equal(wav.data.length, 2 * 47440);
  assert.equal(wav.durationMs, 2965);
});

test('chunks before data are skipped, odd-sized ones with their pad byte', () => {
  const pcm = Buffer.from([1, 0, 2, 0, 3, 0, 4, 0]);
  const wav = parseWav(riff([['LIST', Buffer.from('odd')], ['fmt ', fmt({ channels: 2, rate: 44100 })],
    ['fact', Buffer.alloc(4)], ['data', pcm]]));
  assert.equal(wav.sampleRate, 44100);
  assert.equal(wav.channels, 2);
  assert.deepEqual(wav.data, pcm);
  assert.equal(wav.durationMs, (1000 * 2) / 44100);
});

test('WAVE_FORMAT_EXTENSIBLE holding 16-bit PCM is accepted', () => {
  const wav = parseWav(riff([['fmt ', fmt({ tag: 0xfffe, rate: 8000, subFormat: 1 })], ['data', Buffer.alloc(16)]]));
  assert.equal(wav.sampleRate, 8000);
  assert.equal(wav.durationMs, 1);
});

test('a truncated data chunk keeps its whole frames', () => {
  const file = riff([['fmt ', fmt({ channels: 2 })], ['data', Buffer.alloc(400)]]).subarray(0, 44 + 10);
  assert.equal(parseWav(file).data.length, 8);
});

test('what is not 16-bit PCM WAV is refused with a reason', () => {
  // two_utterances.wav is 32-bit PCM in a WAVE_FORMAT_EXTENSIBLE header.
  assert.throws(() => parseWav(readFileSync(new URL('two_utterances.wav', FIXTURES))), /16-bit PCM .*32 bits/);
  assert.throws(() => parseWav(riff([['fmt ', fmt({ tag: 3, bits: 32 })], ['data', Buffer.alloc(8)]])), /16-bit PCM/);
  assert.throws(() => parseWav(Buffer.from('OggS not a wav file')), /not a RIFF\/WAVE/);
  assert.throws(() => parseWav(riff([['fmt ', fmt()]])), /no data chunk/);
  assert.throws(() => parseWav(riff([['data', Buffer.alloc(4)]])), /no fmt chunk/);
});
