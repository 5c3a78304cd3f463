// A minimal RIFF/WAVE reader for 16-bit PCM: the header is parsed here, no dependency.

const PCM = 1;
const EXTENSIBLE = 0xfffe;

/**
 * Parses a RIFF/WAVE file holding 16-bit PCM.
 * @param {Buffer} buffer the whole file
 * @returns {{sampleRate: number, channels: number, bitsPerSample: number, data: Buffer, durationMs: number}}
 *   `data` is the PCM (little-endian, channels interleaved), a view into `buffer`.
 */
export function parseWav(buffer) {
  if (buffer.length < 12 || buffer.toString('ascii', 0, 4) !== 'RIFF' || buffer.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error('not a RIFF/WAVE file');
  }
  let format;
  let data;
  // Chunks: 4-byte id, 32-bit little-endian size, body padded to an even length.
  for (let offset = 12; offset + 8 <= buffer.length; ) {
    const id = buffer.toString('ascii', offset, offset + 4);
    const size = buffer.readUInt32LE(offset + 4);
    const body = buffer.subarray(offset + 8, offset + 8 + size);
    if (id === 'fmt ') {
      if (body.length < 16) throw new Error('WAV fmt chunk too short');
      format = {
        tag: body.readUInt16LE(0),
        channels: body.readUInt16LE(2),
        sampleRate: body.readUInt32LE(4),
        bitsPerSample: body.readUInt16LE(14),
      };
      // WAVE_FORMAT_EXTENSIBLE names the real format in the first 2 bytes of its sub-format GUID.
      if (format.tag === EXTENSIBLE && body.length >= 26) format.tag = body.readUInt16LE(24);
    } else if (id === 'data') {
      data = body; // a truncated file (size past the end) keeps what is there
      break;
    }
    offset += 8 + size + (size % 2);
  }
  if (!format) throw new Error('WAV file has no fmt chunk');
  if (!data) throw new Error('WAV file has no data chunk');
  if (format.tag !== PCM || format.bitsPerSample !== 16) {
    throw new Error(`WAV must be 16-bit PCM (got format ${format.tag}, ${format.bitsPerSample} bits)`);
  }
  if (format.channels < 1 || format.sampleRate < 1) throw new Error('WAV header has no channels or sample rate');
  const frameBytes = 2 * format.channels;
  data = data.subarray(0, data.length - (data.length % frameBytes));
  return {
    sampleRate: format.sampleRate,
    channels: format.channels,
    bitsPerSample: 16,
    data,
    durationMs: (1000 * data.length) / frameBytes / format.sampleRate,
  };
}
