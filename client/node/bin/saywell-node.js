#!/usr/bin/env node
// saywell-node: stream a WAV file to a saywell server and show the live hypothesis and the assessment.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect, LiveHypothesis, statusName } from '../src/index.js';
import { renderAssessment, renderLive, renderSummary } from '../src/render.js';

const USAGE = `usage: saywell-node assess FILE.wav [options]
       saywell-node capabilities [options]

  --target HOST:PORT      server (default $SAYWELL_TARGET or 127.0.0.1:50051)
  --reference-text TEXT   what the learner should say (closed mode); default open mode
  --flag-sensitivity X    0..1: how readily words are flagged (server default 0.5)
  --realtime              send the audio at real-time pace, like a microphone (default)
  --fast                  send it as fast as the server accepts
  --speed X               X times real time
  --no-interim            no live hypothesis, only the final assessment
  --token TOKEN           bearer token (default $SAYWELL_TOKEN)
  --tls                   TLS with the system's roots
  --root-cert FILE        TLS with this CA (PEM)
  --client-cert FILE --client-key FILE   mutual TLS`;

const OPTIONS = {
  target: { type: 'string', default: process.env.SAYWELL_TARGET ?? '127.0.0.1:50051' },
  'reference-text': { type: 'string', default: '' },
  'flag-sensitivity': { type: 'string' },
  realtime: { type: 'boolean' },
  fast: { type: 'boolean' },
  speed: { type: 'string' },
  'no-interim': { type: 'boolean' },
  token: { type: 'string', default: process.env.SAYWELL_TOKEN },
  tls: { type: 'boolean' },
  'root-cert': { type: 'string' },
  'client-cert': { type: 'string' },
  'client-key': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

function fail(message, code) {
  console.error(`saywell-node: ${message}`);
  process.exit(code);
}

function tlsOptions(values) {
  const file = (path) => path && readFileSync(path);
  if (!values.tls && !values['root-cert'] && !values['client-cert']) return undefined;
  if (Boolean(values['client-cert']) !== Boolean(values['client-key'])) {
    throw new Error('--client-cert and --client-key go together');
  }
  return {
    rootCert: file(values['root-cert']),
    certChain: file(values['client-cert']),
    privateKey: file(values['client-key']),
  };
}

function speedOf(values) {
  if ([values.realtime, values.fast, values.speed !== undefined].filter(Boolean).length > 1) {
    throw new Error('give one of --realtime, --fast, --speed');
  }
  if (values.fast) return Infinity;
  if (values.speed === undefined) return 1;
  const speed = Number(values.speed);
  if (!(speed > 0)) throw new Error(`--speed must be a positive number, not ${values.speed}`);
  return speed;
}

function flagSensitivityOf(values) {
  if (values['flag-sensitivity'] === undefined) return undefined;
  const sensitivity = Number(values['flag-sensitivity']);
  if (!(sensitivity >= 0 && sensitivity <= 1)) throw new Error('--flag-sensitivity must be between 0 and 1');
  return sensitivity;
}

async function assess(client, file, values) {
  const tty = Boolean(process.stdout.isTTY);
  const live = new LiveHypothesis();
  let liveShown = false; // on a TTY: a live line is on screen, to be redrawn or cleared
  const showLive = () => {
    const words = live.words();
    if (tty) {
      if (!liveShown && words.length === 0) return;
      // Keep the end of a long line (uncoloured): a wrapped line could not be redrawn in place with \r.
      const width = (process.stdout.columns || 80) - 1;
      const plain = renderLive(words);
      const line = plain.length > width ? `…${plain.slice(-(width - 1))}` : renderLive(words, { color: true });
      process.stdout.write(`\r\x1b[K${line}`);
      liveShown = words.length > 0;
    } else if (words.length > 0) {
      console.log(`live: ${renderLive(words)}`);
    }
  };
  const print = (lines) => {
    if (liveShown) process.stdout.write('\r\x1b[K');
    liveShown = false;
    for (const line of lines) console.log(line);
  };

  const responses = client.streamFile(file, {
    referenceText: values['reference-text'],
    interimResults: !values['no-interim'],
    flagSensitivity: flagSensitivityOf(values),
    speed: speedOf(values),
  });
  for await (const response of responses) {
    const changed = live.apply(response);
    switch (response.event) {
      case 'utterance':
        print(renderAssessment(response.utterance, { color: tty }));
        break;
      case 'utterance_error': {
        const { utterance_index: index, code, message } = response.utterance_error;
        print([`utterance ${index} could not be assessed: ${code}: ${message}`]);
        break;
      }
      case 'summary':
        print([renderSummary(response.summary)]);
        break;
    }
    if (changed) showLive();
  }
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({ options: OPTIONS, allowPositionals: true });
  } catch (error) {
    fail(`${error.message}\n${USAGE}`, 2);
  }
  const { values, positionals } = parsed;
  const [command, file, ...rest] = positionals;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const valid = (command === 'assess' && file && rest.length === 0) || (command === 'capabilities' && !file);
  if (!valid) fail(USAGE, 2);

  let client;
  try {
    client = connect(values.target, { tls: tlsOptions(values), token: values.token });
    if (command === 'capabilities') {
      console.log(JSON.stringify(await client.capabilities(), null, 2));
    } else {
      await assess(client, file, values);
    }
  } catch (error) {
    if (typeof error.code === 'number') {
      fail(`${statusName(error.code)}: ${error.details || error.message} (server ${values.target})`, 1);
    }
    fail(error.message, 2);
  } finally {
    client?.close();
  }
}

// `saywell-node ... | head`: a closed pipe ends the output, not with a stack trace.
process.stdout.on('error', (error) => process.exit(error.code === 'EPIPE' ? 0 : 1));
await main();
