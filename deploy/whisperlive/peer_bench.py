"""Transcript-lag benchmark against a WhisperLive server, for a side-by-side with `saywell bench`.

Standalone: needs numpy, soundfile, websockets (sync client) and optionally psutil, all in the WhisperLive venv.
It speaks WhisperLive's websocket protocol as whisper_live/client.py does: a JSON handshake, SERVER_READY,
then binary float32 16 kHz mono frames, then b"END_OF_AUDIO". The server answers with
{"uid", "segments": [{"start", "end", "text", "completed", "words"?}]}, times in seconds from stream start.

Each stream plays the WAV fixtures at real-time pace (100 ms chunks), 1.0 s of silence after each file, until
--duration seconds of audio were scheduled (whole files), then --tail-s of silence and END_OF_AUDIO. Stream i
starts at the i-th file, so parallel streams are not in lockstep.

Metrics (per word instance, over all streams):
  transcript_lag_ms        first arrival of a message containing the word (any segment, partial or completed)
                           minus the wall time at which the audio chunk holding the word's end was sent. The
                           word's end is the server's own word timestamp (word_timestamps=true), taken from the
                           completed segment that finally holds the word; a word is followed across re-decodes
                           by its text and start or end time (--match-tol-s). Only words that end up in a completed
                           segment count (partials that were later revised away are dropped).
  segment_final_latency_ms per utterance (a speech region of a WAV file, found by energy: two_utterances.wav
                           holds two): the last of its words to appear in a completed segment, minus the wall
                           time at which the end of the utterance's speech was sent. The last utterance
                           of each stream is reported apart (last_utterance_final_latency_ms): with no next
                           utterance, WhisperLive completes it only after same_output_threshold repeated decodes.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import threading
import time
import uuid
import warnings

import numpy as np
import soundfile as sf
from websockets.sync.client import connect

warnings.filterwarnings("ignore", message="connect\\(\\) must be used as a context manager")
RATE = 16000
CHUNK_S = 0.1
CHUNK = int(RATE * CHUNK_S)


def load_fixtures(data_dir):
    clips = []
    for path in sorted(glob.glob(os.path.join(data_dir, "*.wav"))):
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if sr != RATE:  # market_8k.wav: linear resampling is enough for a latency benchmark
            n = int(round(len(audio) * RATE / sr))
            audio = np.interp(np.arange(n) * sr / RATE, np.arange(len(audio)), audio).astype(np.float32)
        clips.append((os.path.basename(path), audio))
    if not clips:
        raise SystemExit(f"no .wav files in {data_dir}")
    return clips


def speech_regions(audio, frame_s=0.02, rel_threshold=0.05, merge_gap_s=0.5):
    """(start_s, end_s) of speech in a clean synthesized clip: 20 ms frames above 5% of the peak frame RMS,
    gaps under 0.5 s merged. Splits two_utterances.wav in two; trims flite's leading/trailing silence."""
    f = int(RATE * frame_s)
    n = len(audio) // f
    rms = np.sqrt((audio[:n * f].reshape(n, f) ** 2).mean(axis=1))
    regions = []
    for i in np.flatnonzero(rms > rel_threshold * rms.max()):
        if regions and (i - regions[-1][1]) * frame_s <= merge_gap_s:
            regions[-1][1] = i
        else:
            regions.append([i, i])
    return [(a * frame_s, (b + 1) * frame_s) for a, b in regions]


def build_stream(clips, duration_s, gap_s, rotate):
    """Returns (audio, utterances) with utterances = [(name, speech_start_s, speech_end_s)] in stream time."""
    parts, utterances, pos, i = [], [], 0.0, rotate
    gap = np.zeros(int(RATE * gap_s), dtype=np.float32)
    while pos < duration_s:
        name, audio = clips[i % len(clips)]
        for start, end in speech_regions(audio):
            utterances.append((name, pos + start, pos + end))
        parts += [audio, gap]
        pos += (len(audio) + len(gap)) / RATE
        i += 1
    return np.concatenate(parts), utterances


def norm(word):
    return re.sub(r"[^a-z0-9']", "", word.lower())


class Stream:
    def __init__(self, index, args, clips):
        self.index = index
        self.args = args
        self.uid = str(uuid.uuid4())
        self.audio, self.utterances = build_stream(clips, args.duration, args.gap_s, rotate=index)
        self.send_times = []  # wall (monotonic) time at which chunk k was sent
        self.messages = []  # (arrival monotonic time, decoded JSON)
        self.error = None
        self.ws = None
        self.ready = threading.Event()

    def connect(self):
        self.ws = connect(f"ws://{self.args.host}:{self.args.port}", max_size=None, open_timeout=30)
        self.ws.send(json.dumps({
            "uid": self.uid, "language": "en", "task": "transcribe", "model": self.args.model,
            "use_vad": not self.args.no_vad, "send_last_n_segments": 10, "no_speech_thresh": 0.45,
            "clip_audio": False, "same_output_threshold": self.args.same_output_threshold,
            "enable_translation": False, "target_language": "fr", "hotwords": None,
            "enable_diarization": False, "max_speakers": 10, "known_speakers": None,
            "word_timestamps": not self.args.no_word_timestamps,
        }))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("message") == "SERVER_READY":
                return
            if msg.get("status") in ("WAIT", "ERROR"):
                raise RuntimeError(f"stream {self.index}: server refused: {msg}")
        raise RuntimeError(f"stream {self.index}: no SERVER_READY")

    def receive(self):
        try:
            while True:
                raw = self.ws.recv()
                self.messages.append((time.monotonic(), json.loads(raw)))
        except Exception as exc:  # connection closed at the end, or an error
            if not isinstance(exc, (EOFError,)) and "close" not in type(exc).__name__.lower():
                self.error = self.error or repr(exc)

    def send(self, t0):
        audio = np.concatenate([self.audio, np.zeros(int(RATE * self.args.tail_s), dtype=np.float32)])
        n_chunks = math.ceil(len(audio) / CHUNK)
        for k in range(n_chunks):
            delay = t0 + k * CHUNK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.ws.send(audio[k * CHUNK:(k + 1) * CHUNK].tobytes())
            self.send_times.append(time.monotonic())
        self.ws.send(b"END_OF_AUDIO")

    def sent_at(self, pos_s):
        """Wall time at which the chunk containing audio position pos_s was sent."""
        k = max(0, math.ceil(round(pos_s / CHUNK_S, 6)) - 1)
        return self.send_times[min(k, len(self.send_times) - 1)]

    def analyse(self):
        words = []  # instances: {"w", "end", "first_seen", "completed_at"}
        for t, msg in self.messages:
            segs = msg.get("segments")
            if not segs:
                continue
            seen = set()
            for seg in segs:
                for w in seg.get("words") or []:
                    key, start, end = norm(w["word"]), float(w["start"]), float(w["end"])
                    if not key:
                        continue
                    # Same word = same text and a start or an end within the tolerance of its last estimate:
                    # the end of a partial's last word stretches to the buffer's end, the start of a segment's
                    # first word sometimes reaches back into the silence before it.
                    match = None
                    for j in range(len(words) - 1, -1, -1):
                        inst = words[j]
                        if j not in seen and inst["w"] == key and (
                                abs(inst["start"] - start) < self.args.match_tol_s
                                or abs(inst["end"] - end) < self.args.match_tol_s):
                            match = j
                            break
                    if match is None:
                        words.append({"w": key, "start": start, "end": end, "first_seen": t,
                                      "completed_at": None, "final_end": None})
                        match = len(words) - 1
                    seen.add(match)
                    inst = words[match]
                    if inst["final_end"] is None:  # latest estimates until the word is completed
                        inst["start"], inst["end"] = start, end
                    if seg.get("completed") and inst["completed_at"] is None:
                        inst["completed_at"], inst["final_end"] = t, end
                if seg.get("completed") and not seg.get("words"):
                    # same_output_threshold completions carry no word list: match by time and text
                    s0, s1 = float(seg["start"]), float(seg["end"])
                    texts = {norm(x) for x in seg.get("text", "").split()}
                    for inst in words:
                        if inst["completed_at"] is None and inst["w"] in texts and s0 - 0.2 <= inst["end"] <= s1 + 0.3:
                            inst["completed_at"], inst["final_end"] = t, inst["end"]
        lags, finals, never = [], [], 0
        for inst in words:
            if inst["completed_at"] is None:
                never += 1
                continue
            lags.append((inst["first_seen"] - self.sent_at(inst["final_end"])) * 1000)
        completed = {}  # (start, end) of each completed segment -> first arrival
        for t, msg in self.messages:
            for seg in msg.get("segments") or []:
                if seg.get("completed"):
                    completed.setdefault((float(seg["start"]), float(seg["end"])), t)
        utt_missing, last_final = 0, None
        for i, (name, start, end) in enumerate(self.utterances):
            # A word belongs to the utterance its (server-timed) end falls in, up to the next one's start.
            hi = self.utterances[i + 1][1] - 0.3 if i + 1 < len(self.utterances) else float("inf")
            mine = [w["completed_at"] for w in words if w["completed_at"] is not None and start - 0.3 <= w["final_end"] < hi]
            if not words:  # --no-word-timestamps: the first completed segment reaching the speech end
                mine = [completed[key] for key in completed if key[0] < end and key[1] >= end - 0.5][:1]
            if not mine:
                utt_missing += 1
                continue
            latency = (max(mine) - self.sent_at(end)) * 1000
            if i == len(self.utterances) - 1:
                last_final = round(latency, 1)  # completed only by the repeated-output rule, in the tail
            else:
                finals.append(latency)
        completed_text = []
        for _, msg in self.messages:
            for seg in msg.get("segments") or []:
                if seg.get("completed") and (not completed_text or completed_text[-1] != (seg["start"], seg["text"])):
                    if (seg["start"], seg["text"]) not in completed_text:
                        completed_text.append((seg["start"], seg["text"]))
        return {"lags": lags, "finals": finals, "last_final": last_final, "words_never_completed": never,
                "utterances": len(self.utterances), "utterances_without_final": utt_missing,
                "transcript_head": " | ".join(t.strip() for _, t in completed_text[:6])}


def find_server_pid(port):
    import psutil
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


class ProcSampler:
    """CPU% (all threads, whole run) and peak RSS of the server process: psutil, else /proc."""

    def __init__(self, pid, period=0.5):
        self.pid, self.period, self.peak_rss, self.stop = pid, period, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _cpu_rss(self):
        try:
            import psutil
            p = psutil.Process(self.pid)
            c = p.cpu_times()
            return c.user + c.system, p.memory_info().rss
        except ImportError:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tick = os.sysconf("SC_CLK_TCK")
            cpu = (int(fields[11]) + int(fields[12])) / tick
            rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            return cpu, rss

    def _run(self):
        while not self.stop.wait(self.period):
            self.peak_rss = max(self.peak_rss, self._cpu_rss()[1])

    @staticmethod
    def _machine_busy():
        """Busy CPU seconds of the whole machine (all cores), to tell how much else was running."""
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def start(self):
        self.busy0 = self._machine_busy()
        self.t0, (self.cpu0, rss) = time.monotonic(), self._cpu_rss()
        self.peak_rss = rss
        self.thread.start()

    def finish(self):
        self.stop.set()
        cpu1, rss = self._cpu_rss()
        self.peak_rss = max(self.peak_rss, rss)
        wall = time.monotonic() - self.t0
        self.machine_cpu_percent = 100.0 * (self._machine_busy() - self.busy0) / wall
        return 100.0 * (cpu1 - self.cpu0) / wall, self.peak_rss / 2**20


def pct(values, q):
    return round(float(np.percentile(values, q)), 1) if values else None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--data", default=os.path.join(here, "..", "..", "tests", "fixtures"))
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of audio per stream (whole files)")
    parser.add_argument("--gap-s", type=float, default=1.0, help="silence after each file")
    parser.add_argument("--tail-s", type=float, default=12.0,
                        help="silence streamed after the last file so its segment can complete")
    parser.add_argument("--model", default="tiny.en", help="handshake 'model' (the server's custom path wins)")
    parser.add_argument("--no-vad", action="store_true", help="handshake use_vad=false (default: true)")
    parser.add_argument("--no-word-timestamps", action="store_true")
    parser.add_argument("--same-output-threshold", type=int, default=10, help="client.py default 10")
    parser.add_argument("--match-tol-s", type=float, default=0.8,
                        help="a word re-reported with the same text and a start or end within this is the same word")
    parser.add_argument("--server-pid", type=int, help="default: the process listening on --port")
    parser.add_argument("--report", help="also write the JSON here")
    parser.add_argument("--dump", help="write every received message with its stream time here (JSON lines)")
    args = parser.parse_args()

    clips = load_fixtures(args.data)
    streams = [Stream(i, args, clips) for i in range(args.streams)]
    for s in streams:
        s.connect()
    pid = args.server_pid or find_server_pid(args.port)
    sampler = ProcSampler(pid) if pid else None
    load_before = os.getloadavg()
    receivers = [threading.Thread(target=s.receive, daemon=True) for s in streams]
    for r in receivers:
        r.start()
    if sampler:
        sampler.start()
    t0 = time.monotonic() + 0.2
    senders = [threading.Thread(target=s.send, args=(t0,)) for s in streams]
    for th in senders:
        th.start()
    for th in senders:
        th.join()
    for r in receivers:
        r.join(timeout=15)
    cpu, rss = sampler.finish() if sampler else (None, None)
    load_after = os.getloadavg()

    if args.dump:
        with open(args.dump, "w") as f:
            for s in streams:
                for t, msg in s.messages:
                    f.write(json.dumps({"stream": s.index, "t": round(t - t0, 3), "msg": msg}) + "\n")
    results = [s.analyse() for s in streams]
    lags = [x for r in results for x in r["lags"]]
    finals = [x for r in results for x in r["finals"]]
    report = {
        "streams": args.streams,
        "duration_s": round(max(len(s.audio) for s in streams) / RATE, 2),
        "words": len(lags),
        "transcript_lag_ms": {"p50": pct(lags, 50), "p95": pct(lags, 95),
                              "max": round(max(lags), 1) if lags else None},
        "segment_final_latency_ms": {"p50": pct(finals, 50), "p95": pct(finals, 95),
                                     "max": round(max(finals), 1) if finals else None},
        "last_utterance_final_latency_ms": [r["last_final"] for r in results],
        "server_cpu_percent": round(cpu, 1) if cpu is not None else None,
        "server_rss_mb": round(rss, 1) if rss is not None else None,
        # whole machine, 100 = one core busy: minus the server and this client, the rest is other work
        "machine_cpu_percent": round(sampler.machine_cpu_percent, 1) if sampler else None,
        "utterances": sum(r["utterances"] for r in results),
        "utterances_without_final": sum(r["utterances_without_final"] for r in results),
        "words_never_completed": sum(r["words_never_completed"] for r in results),
        "use_vad": not args.no_vad,
        "word_timestamps": not args.no_word_timestamps,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "errors": [s.error for s in streams if s.error],
        "transcript_head": [r["transcript_head"] for r in results],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
