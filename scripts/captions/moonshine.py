#!/usr/bin/env python3
"""Live captions engine: Moonshine (tiny, English) speech-to-text over a pipe.

stdin : raw PCM, signed 16-bit little-endian, 16 kHz, mono (no header).
stdout: one JSON object per line, flushed at once, for every caption line
        whose text changed (or that became final):
          {"id": <int>, "text": "...", "final": true|false,
           "start": <s of audio where the line starts>,
           "audio": <s of audio fed so far>}
        id is the line number (0, 1, 2, ...); a final line never changes again.
stderr: "moonshine: ready (model ...)" once loaded, then diagnostics only.
At EOF the stream is stopped, the remaining lines are sent as final and the
script exits 0.

Uses only the standard library: it loads libmoonshine.so and the tiny-en
model from the installed `moonshine_voice` wheel with ctypes, without
importing the package (whose __init__ needs numpy/sounddevice/requests).
Install:  pip install --no-deps moonshine-voice==0.1.0
It never downloads anything.
"""

import argparse
import array
import ctypes
import importlib.util
import json
import os
import select
import sys
import time

RATE = 16000
HEADER_VERSION = 30000          # MOONSHINE_HEADER_VERSION of the 0.1.0 wheel
ARCHS = {"tiny": 0, "base": 1, "tiny-streaming": 2, "base-streaming": 3,
         "small-streaming": 4, "medium-streaming": 5}
FLAG_FORCE_UPDATE = 1
INSTALL_HINT = "install it with: pip install --no-deps moonshine-voice==0.1.0"
MODEL_FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")


# C structures, exactly as moonshine_voice/moonshine_api.py (0.1.0) declares them.
class WordC(ctypes.Structure):
    _fields_ = [("text", ctypes.c_char_p), ("start", ctypes.c_float),
                ("end", ctypes.c_float), ("confidence", ctypes.c_float)]


class LineC(ctypes.Structure):
    _fields_ = [
        ("text", ctypes.c_char_p),
        ("audio_data", ctypes.POINTER(ctypes.c_float)),
        ("audio_data_count", ctypes.c_size_t),
        ("start_time", ctypes.c_float),
        ("duration", ctypes.c_float),
        ("id", ctypes.c_uint64),
        ("is_complete", ctypes.c_int8),
        ("is_updated", ctypes.c_int8),
        ("is_new", ctypes.c_int8),
        ("has_text_changed", ctypes.c_int8),
        ("have_speakers_changed", ctypes.c_int8),
        ("speaker_spans", ctypes.c_void_p),
        ("speaker_span_count", ctypes.c_uint64),
        ("last_transcription_latency_ms", ctypes.c_uint32),
        ("words", ctypes.POINTER(WordC)),
        ("word_count", ctypes.c_uint64),
    ]


class TranscriptC(ctypes.Structure):
    _fields_ = [("lines", ctypes.POINTER(LineC)), ("line_count", ctypes.c_uint64)]


class OptionC(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


def fail(msg, code=2):
    sys.stderr.write("moonshine: error: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(code)


def package_dirs():
    """Folders of the installed moonshine_voice package, found without importing it."""
    try:
        spec = importlib.util.find_spec("moonshine_voice")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)
    return []


def locate(args):
    pkgs = package_dirs()
    where = pkgs[0] if pkgs else None
    lib = args.lib or (os.path.join(where, "libmoonshine.so") if where else None)
    model = args.model or (os.path.join(where, "assets", "tiny-en") if where else None)
    if lib is None or model is None:
        fail("Python package 'moonshine_voice' not found by %s (looked in %s); "
             "%s, or pass --lib and --model"
             % (sys.executable, ", ".join(p for p in sys.path if p), INSTALL_HINT))
    if not os.path.isfile(lib):
        fail("Moonshine library not found at %s; %s, or pass --lib" % (lib, INSTALL_HINT))
    missing = [f for f in MODEL_FILES if not os.path.isfile(os.path.join(model, f))]
    if missing:
        fail("Moonshine model not found at %s (missing %s); %s, or pass --model"
             % (model, ", ".join(missing), INSTALL_HINT))
    return lib, model


def load_library(path):
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        fail("cannot load Moonshine library %s: %s; %s" % (path, e, INSTALL_HINT))
    i32, u32, u64 = ctypes.c_int32, ctypes.c_uint32, ctypes.c_uint64
    sigs = {
        "moonshine_error_to_string": (ctypes.c_char_p, [i32]),
        "moonshine_load_transcriber_from_files":
            (i32, [ctypes.c_char_p, u32, ctypes.POINTER(OptionC), u64, i32]),
        "moonshine_free_transcriber": (None, [i32]),
        "moonshine_create_stream": (i32, [i32, u32]),
        "moonshine_free_stream": (i32, [i32, i32]),
        "moonshine_start_stream": (i32, [i32, i32]),
        "moonshine_stop_stream": (i32, [i32, i32]),
        "moonshine_transcribe_add_audio_to_stream":
            (i32, [i32, i32, ctypes.POINTER(ctypes.c_float), u64, i32, u32]),
        "moonshine_transcribe_stream":
            (i32, [i32, i32, u32, ctypes.POINTER(ctypes.POINTER(TranscriptC))]),
    }
    for name, (res, argt) in sigs.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            fail("%s lacks %s: not the moonshine-voice 0.1.0 library; %s"
                 % (path, name, INSTALL_HINT))
        fn.restype, fn.argtypes = res, argt
    return lib


class Engine:
    def __init__(self, lib, model, arch, options):
        self.lib = lib
        opts = [OptionC(k.encode(), v.encode()) for k, v in options]
        arr = (OptionC * len(opts))(*opts) if opts else None
        h = lib.moonshine_load_transcriber_from_files(
            model.encode(), ARCHS[arch], arr, len(opts), HEADER_VERSION)
        self.check(h, "loading model %s" % model)
        self.tr = h
        self.st = self.check(lib.moonshine_create_stream(h, 0), "create_stream")
        self.check(lib.moonshine_start_stream(h, self.st), "start_stream")

    def check(self, rc, what):
        if rc < 0:
            msg = self.lib.moonshine_error_to_string(rc)
            fail("%s failed: %s (%d)" % (what, msg.decode() if msg else "?", rc), 3)
        return rc

    def add(self, samples):
        buf = (ctypes.c_float * len(samples))(*samples)
        self.check(self.lib.moonshine_transcribe_add_audio_to_stream(
            self.tr, self.st, buf, len(samples), RATE, 0), "add_audio")

    def transcribe(self, flags=0):
        """[(index, text, complete, start)], copied out since the library
        reuses the memory on its next call. Lines are only ever appended, so
        the index is a stable id; Moonshine's own ids are random 64-bit
        numbers, too big for JSON readers that use doubles."""
        out = ctypes.POINTER(TranscriptC)()
        self.check(self.lib.moonshine_transcribe_stream(
            self.tr, self.st, flags, ctypes.byref(out)), "transcribe_stream")
        if not out:
            return []
        t = out.contents
        res = []
        for i in range(t.line_count):
            ln = t.lines[i]
            text = (ln.text or b"").decode("utf-8", "replace").strip()
            res.append((i, text, bool(ln.is_complete), float(ln.start_time)))
        return res

    def stop(self):
        self.check(self.lib.moonshine_stop_stream(self.tr, self.st), "stop_stream")

    def close(self):
        self.lib.moonshine_free_stream(self.tr, self.st)
        self.lib.moonshine_free_transcriber(self.tr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", help="path of libmoonshine.so (default: from the moonshine_voice package)")
    ap.add_argument("--model", help="model folder (default: <moonshine_voice>/assets/tiny-en)")
    ap.add_argument("--arch", default="tiny", choices=sorted(ARCHS),
                    help="model architecture of --model (default tiny)")
    ap.add_argument("--interval", type=float, default=0.3,
                    help="seconds of audio between transcriptions (default 0.3)")
    ap.add_argument("--max-backlog", type=float, default=1.0,
                    help="when input queues up faster than it is transcribed, still "
                         "update at least every this many seconds of audio (default 1.0)")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="advanced transcriber option, e.g. vad_threshold=0.5 (repeatable)")
    args = ap.parse_args()
    options = []
    for o in args.option:
        if "=" not in o:
            fail("--option wants NAME=VALUE, got %r" % o)
        options.append(tuple(o.split("=", 1)))

    # Keep stdout for our JSON only: anything the native code prints to fd 1
    # goes to stderr instead.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)

    lib_path, model = locate(args)
    t0 = time.monotonic()
    eng = Engine(load_library(lib_path), model, args.arch, options)
    sys.stderr.write("moonshine: ready (model %s, arch %s, loaded in %.2f s)\n"
                     % (model, args.arch, time.monotonic() - t0))
    sys.stderr.flush()

    sent = {}                       # id -> (text, final) last written
    fed = 0                         # samples fed so far

    def emit(lines, force_final=False):
        for lid, text, done, start in lines:
            final = done or force_final
            prev = sent.get(lid)
            if prev == (text, final) or (prev is None and not text):
                continue            # unchanged, or nothing to show yet
            if prev is not None and prev[1]:
                continue            # already final: never revised
            sent[lid] = (text, final)
            out.write(json.dumps({"id": lid, "text": text, "final": final,
                                  "start": round(start, 3),
                                  "audio": round(fed / RATE, 3)},
                                 ensure_ascii=False) + "\n")
        out.flush()

    chunk_bytes = RATE // 10 * 2    # read and feed 100 ms at a time
    every = max(1, int(args.interval * RATE))
    catch_up = max(every, int(args.max_backlog * RATE))
    fd = sys.stdin.fileno()
    buf = bytearray()
    eof = False
    last_tx = 0
    tx_n, tx_s, tx_max = 0, 0.0, 0.0
    started, cpu0 = time.monotonic(), time.process_time()

    def backlog():
        """True when more input is already waiting, i.e. we are behind."""
        if len(buf) >= chunk_bytes:
            return True
        try:
            return bool(select.select([fd], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    try:
        while True:
            while len(buf) < chunk_bytes and not eof:
                data = os.read(fd, 65536)
                if data:
                    buf += data
                else:
                    eof = True
            n = min(len(buf), chunk_bytes) & ~1
            if n == 0:
                break               # EOF (an odd trailing byte is dropped)
            pcm = array.array("h", bytes(buf[:n]))
            del buf[:n]
            if sys.byteorder == "big":
                pcm.byteswap()
            eng.add([s / 32768.0 for s in pcm])
            fed += len(pcm)
            # Transcribe every --interval of audio, but while input is queued
            # (the model is slower than the audio) first catch up, at most
            # --max-backlog of audio between updates, so the lag cannot grow.
            due = fed - last_tx
            if due >= every and (due >= catch_up or not backlog()):
                last_tx = fed
                t1 = time.monotonic()
                lines = eng.transcribe(FLAG_FORCE_UPDATE)
                dt = time.monotonic() - t1
                tx_n, tx_s, tx_max = tx_n + 1, tx_s + dt, max(tx_max, dt)
                emit(lines)
        # Analyse all the audio before stopping: stopping alone only marks
        # the lines complete, with the text of the last update (or nothing).
        emit(eng.transcribe(FLAG_FORCE_UPDATE))
        eng.stop()
        emit(eng.transcribe(FLAG_FORCE_UPDATE), force_final=True)
        eng.close()
        wall, cpu = time.monotonic() - started, time.process_time() - cpu0
        sys.stderr.write("moonshine: done, %.1f s of audio in %.1f s (%.1f s CPU); %d updates, "
                         "%.0f ms mean, %.0f ms max\n"
                         % (fed / RATE, wall, cpu, tx_n, 1000 * tx_s / max(tx_n, 1),
                            1000 * tx_max))
    except BrokenPipeError:
        try:
            sys.stderr.write("moonshine: stdout closed, stopping\n")
        finally:
            os._exit(0)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
