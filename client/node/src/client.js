// The saywell client: the contract is loaded at run time from assessment.proto (no generated code).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { parseWav } from './wav.js';

// Where the contract is looked for, first match wins: the `protoPath` option, $SAYWELL_PROTO, the copy that
// `npm pack` bundles (scripts/bundle-proto.js), the repository's own proto/ (this package lives in client/node).
const BUNDLED_PROTO = fileURLToPath(new URL('../proto/saywell/v1/assessment.proto', import.meta.url));
const REPOSITORY_PROTO = fileURLToPath(new URL('../../../proto/saywell/v1/assessment.proto', import.meta.url));

// Messages keep the .proto's field names (keepCase: stable_words, start_ms), int64 comes as a JS number, enums as
// their names, unset fields as their defaults, and `response.event` names the oneof member that is set.
const LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

export function protoPath(explicit) {
  const candidates = [explicit, process.env.SAYWELL_PROTO, BUNDLED_PROTO, REPOSITORY_PROTO].filter(Boolean);
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error(`saywell contract not found; looked at ${candidates.join(', ')} (set SAYWELL_PROTO)`);
  return found;
}

/** The `saywell.v1` package: service constructors and message types, loaded from the .proto. */
export function loadContract(path) {
  const definition = protoLoader.loadSync(protoPath(path), LOADER_OPTIONS);
  return grpc.loadPackageDefinition(definition).saywell.v1;
}

/** The name of a gRPC status code, e.g. 14 -> "UNAVAILABLE". */
export function statusName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) ?? `code ${code}`;
}

/**
 * Opens a channel to a saywell server.
 * @param {string} target host:port
 * @param {object} [options]
 * @param {boolean|{rootCert?: Buffer, privateKey?: Buffer, certChain?: Buffer}} [options.tls] TLS (true: the system's
 *   roots; rootCert: a private CA; privateKey and certChain: a client certificate for mutual TLS). Default plaintext.
 * @param {string} [options.token] bearer token, sent as `authorization: Bearer <token>` on every call
 * @param {string} [options.protoPath] the contract's location (see protoPath)
 */
export function connect(target, { tls, token, protoPath: path } = {}) {
  const credentials = tls
    ? grpc.credentials.createSsl(tls.rootCert ?? null, tls.privateKey ?? null, tls.certChain ?? null)
    : grpc.credentials.createInsecure();
  const { PronunciationAssessmentService } = loadContract(path);
  return new SaywellClient(new PronunciationAssessmentService(target, credentials), token);
}

export class SaywellClient {
  #stub;
  #token;

  constructor(stub, token) {
    this.#stub = stub;
    this.#token = token;
  }

  #metadata() {
    const metadata = new grpc.Metadata();
    if (this.#token) metadata.set('authorization', `Bearer ${this.#token}`);
    return metadata;
  }

  /** GetCapabilities: encodings, languages, limits, engine. */
  capabilities({ deadlineMs = 10_000 } = {}) {
    return new Promise((resolve, reject) => {
      this.#stub.GetCapabilities({}, this.#metadata(), { deadline: Date.now() + deadlineMs }, (error, reply) =>
        error ? reject(error) : resolve(reply));
    });
  }

  /** The raw StreamAssess call (a duplex stream of request and response objects), for a source of your own. */
  streamAssess() {
    return this.#stub.StreamAssess(this.#metadata());
  }

  /** Reads a 16-bit PCM WAV file and streams it: see streamAudio. */
  async *streamFile(path, options = {}) {
    yield* this.streamAudio(parseWav(await readFile(path)), options);
  }

  /**
   * Streams PCM like a microphone would: the config first, then LINEAR16 chunks, each sent once its audio would
   * have been recorded, then a half-close. Yields the StreamAssessResponse objects; a gRPC error is thrown from
   * the iteration (error.code, error.details). Leaving the loop early cancels the call.
   * @param {{sampleRate: number, channels: number, data: Buffer}} audio as parseWav returns it
   * @param {object} [options]
   * @param {string} [options.referenceText] what the learner should say (closed mode); empty: open mode
   * @param {boolean} [options.interimResults=true] send the live hypothesis
   * @param {number} [options.chunkMs=100] audio per message
   * @param {number} [options.speed=1] 1: real time; 2: twice as fast; Infinity: as fast as the stream accepts
   * @param {string} [options.clientRequestId]
   * @param {number} [options.flagSensitivity] 0..1
   * @param {object} [options.endpointing] EndpointingConfig fields, e.g. {end_of_utterance_silence_ms: 500}
   */
  async *streamAudio(audio, options = {}) {
    const call = this.streamAssess();
    const sending = sendAudio(call, audio, options).catch((error) => call.destroy(error));
    let ended = false;
    try {
      for await (const response of call) yield response;
      ended = true;
    } finally {
      if (!ended) call.cancel();
      await sending;
    }
  }

  close() {
    this.#stub.close();
  }
}

async function sendAudio(call, audio, options) {
  const { referenceText = '', interimResults = true, chunkMs = 100, speed = 1 } = options;
  const assessment = { reference_text: referenceText };
  if (options.flagSensitivity !== undefined) assessment.flag_sensitivity = options.flagSensitivity;
  const config = {
    audio: {
      encoding: 'AUDIO_ENCODING_LINEAR16',
      sample_rate_hertz: audio.sampleRate,
      audio_channel_count: audio.channels,
    },
    assessment,
    endpointing: options.endpointing ?? {},
    interim_results: interimResults,
    client_request_id: options.clientRequestId ?? '',
  };
  const cancelled = () => call.destroyed || call.writableEnded;
  await write(call, { config });
  const chunkBytes = 2 * audio.channels * Math.round((audio.sampleRate * chunkMs) / 1000);
  const started = performance.now();
  for (let offset = 0; offset < audio.data.length && !cancelled(); offset += chunkBytes) {
    const chunk = audio.data.subarray(offset, offset + chunkBytes);
    const recordedMs = (1000 * (offset + chunk.length)) / (2 * audio.channels * audio.sampleRate);
    const wait = started + recordedMs / speed - performance.now();
    if (wait > 0) await sleep(wait);
    if (cancelled()) break;
    await write(call, { audio: chunk });
  }
  if (!cancelled()) call.end();
}

/** Writes one request; when HTTP/2 flow control holds it back, waits until the call drains or closes. */
function write(call, request) {
  if (call.write(request)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done).off('close', done);
      resolve();
    };
    call.on('drain', done).on('close', done);
  });
}
