export { connect, loadContract, protoPath, statusName, SaywellClient } from './client.js';
export { LiveHypothesis } from './live-hypothesis.js';
export { parseWav } from './wav.js';
