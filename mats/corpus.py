"""Synthesize a captioned audio corpus (speech, music, signals, mixed scenes) for the offline encoder.

    apt-get install espeak-ng fluidsynth fluid-soundfont-gm sox
    mats corpus --data ../shared/data --out ~/.cache/mats/corpus --scale 1.0

Why: the aisfx projection was aligned on 830 ESC-50/UrbanSound8K clips of 60 classes, so a voice or a piano
landed next to "a cat meows" or "vehicle horns". Debian ships tools that make speech (espeak-ng), music
(fluidsynth + the General MIDI soundfont) and signals (sox), so we can make many clips with true captions.

What it writes under ``--out``: ``clips/<id>.flac`` (mono, 44.1 kHz, 16 bit, 5 s) and ``corpus.csv``, one row per
clip: its split, kind, concept (clips of one concept are positives of each other when aligning), several
captions (``|``-separated, AudioCaps style), the coarse class (speech / music / other), the instrument family,
the sources of a mixture, how it was made (voice, language, GM program, seed) and the realism applied
(reverb, band limit, microphone noise, gain).

Held-out split (``split`` = train / val / test): whole espeak voices, whole languages, whole GM programs and
drum kits, and seeds are assigned to one split, so no held-out voice, language or instrument program is heard
in training. English is spoken in every split (by different voices, reading different sentences: AudioCaps
train / val / test captions). Mixtures draw sources of their own split only; real clips come from the
encoder's recording-grouped ESC-50/UrbanSound8K folds (fold 0 test, 1 val, 2 train; see mats.realclips).

Reserved for evaluation and never used here in any form: the sounds of the Debian packages sound-icons,
gnome-audio, sound-theme-freedesktop and alsa-utils. Every source sound is synthesized from scratch or read
from ``--data/clips``.

Seeded and cached: clip ``i`` of a kind gets its own RNG ``(seed, kind, i)``, and a clip whose row (same seed)
is in ``corpus.csv`` and whose FLAC exists is not made again, so a rerun (or a larger ``--scale``) only makes what
is missing. Delete ``corpus.csv`` to remake every row after changing the captions.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import math
import shutil
import struct
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mats.realclips import ESC50_SENTENCES, REAL_SPLIT, US8K_SENTENCES, real_folds

SR = 44100
SECONDS = 5.0
N = int(SR * SECONDS)
TOOLS = ("espeak-ng", "fluidsynth", "sox")
SOUNDFONT_CANDIDATES = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
COLUMNS = ("id", "file", "split", "kind", "concept", "captions", "coarse", "family", "sources", "voice", "language",
           "program", "seed", "realism")


# ----------------------------------------------------------------------------------------------
# splits: every voice / language / program has one home


def split_of(name: str, val: float = 0.15, test: float = 0.2) -> str:
    """Deterministic split for a name (voice, language, seed...): a hash, not a list, so adding names is stable."""
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < test else "val" if u < test + val else "train"


# espeak-ng variants whose voice character is clear from the name; the rest are "a voice" / "a person".
MALE = ["male1", "male2", "male3", "male4", "male5", "male6", "male7", "male8", "grandpa", "Andy", "Mr_Serious",
        "Michael", "Mike", "Paul", "Robert", "john", "edward", "max", "norbert", "victor", "travis", "boris"]
FEMALE = ["female1", "female2", "female3", "female4", "female5", "grandma", "Annie", "Alicia", "Andrea", "belinda",
          "linda", "steph", "anika", "Auntie", "shelby"]
ROBOTIC = ["Robosoft", "Robosoft3", "Robosoft5", "UniversalRobot", "anikaRobot", "klatt", "klatt3", "croak"]
WHISPER = ["whisper", "female_whisper"]
# espeak-ng variant files are named in lower case for some voices (the -v argument uses the file name).
VARIANT_FILE = {"Robosoft": "robosoft", "Robosoft3": "robosoft3", "Robosoft5": "robosoft5", "UniversalRobot": "UniRobot",
                "female_whisper": "whisperf", "Auntie": "aunty", "Mr_Serious": "Mr", "male1": "m1", "male2": "m2",
                "male3": "m3", "male4": "m4", "male5": "m5", "male6": "m6", "male7": "m7", "male8": "m8",
                "female1": "f1", "female2": "f2", "female3": "f3", "female4": "f4", "female5": "f5"}
# Preferred fixed split for the plain variants, so every split has men and women; the rest go by hash.
FIXED_VOICE_SPLIT = {"male1": "train", "male2": "train", "male3": "train", "male4": "train", "male5": "val",
                     "male6": "test", "male7": "train", "male8": "test", "female1": "train", "female2": "train",
                     "female3": "val", "female4": "test", "female5": "train", "whisper": "train",
                     "female_whisper": "test", "Robosoft": "train", "Robosoft3": "test", "klatt": "train",
                     "klatt3": "val", "croak": "train", "grandpa": "test", "grandma": "train"}

# A few plain sentences per language (written for this corpus). English reads AudioCaps captions instead.
SENTENCES = {
    "fr": ("French", ["Bonjour, comment allez-vous aujourd'hui ?", "Il fait beau ce matin, allons au marché.",
                      "Je voudrais un café et un croissant, s'il vous plaît.", "Le train part dans dix minutes."]),
    "de": ("German", ["Guten Morgen, wie geht es Ihnen heute?", "Das Wetter ist heute sehr schön.",
                      "Ich möchte bitte eine Tasse Kaffee.", "Der Zug fährt in zehn Minuten ab."]),
    "es": ("Spanish", ["Buenos días, ¿cómo estás hoy?", "Hace muy buen tiempo esta mañana.",
                       "Quisiera un café con leche, por favor.", "El tren sale en diez minutos."]),
    "it": ("Italian", ["Buongiorno, come stai oggi?", "Oggi il tempo è molto bello.",
                       "Vorrei un caffè, per favore.", "Il treno parte tra dieci minuti."]),
    "pt": ("Portuguese", ["Bom dia, como você está hoje?", "O tempo está muito bonito esta manhã.",
                          "Eu gostaria de um café, por favor.", "O comboio parte em dez minutos."]),
    "nl": ("Dutch", ["Goedemorgen, hoe gaat het vandaag?", "Het weer is vandaag erg mooi.",
                     "Ik wil graag een kopje koffie.", "De trein vertrekt over tien minuten."]),
    "pl": ("Polish", ["Dzień dobry, jak się dzisiaj masz?", "Dzisiaj jest bardzo ładna pogoda.",
                      "Poproszę filiżankę kawy.", "Pociąg odjeżdża za dziesięć minut."]),
    "sv": ("Swedish", ["God morgon, hur mår du idag?", "Vädret är mycket fint idag.",
                       "Jag skulle vilja ha en kopp kaffe.", "Tåget går om tio minuter."]),
    "fi": ("Finnish", ["Hyvää huomenta, mitä kuuluu tänään?", "Tänään on todella kaunis sää.",
                       "Saisinko kupin kahvia, kiitos.", "Juna lähtee kymmenen minuutin päästä."]),
    "tr": ("Turkish", ["Günaydın, bugün nasılsın?", "Bugün hava çok güzel.", "Bir fincan kahve istiyorum lütfen.",
                       "Tren on dakika sonra kalkıyor."]),
    "cs": ("Czech", ["Dobré ráno, jak se dnes máte?", "Dnes je velmi hezké počasí.", "Prosím jednu kávu.",
                     "Vlak odjíždí za deset minut."]),
    "hu": ("Hungarian", ["Jó reggelt, hogy vagy ma?", "Ma nagyon szép az idő.", "Kérek egy csésze kávét.",
                         "A vonat tíz perc múlva indul."]),
    "ro": ("Romanian", ["Bună dimineața, ce mai faci astăzi?", "Vremea este foarte frumoasă azi.",
                        "Aș dori o cafea, vă rog.", "Trenul pleacă în zece minute."]),
    "id": ("Indonesian", ["Selamat pagi, apa kabar hari ini?", "Cuacanya sangat bagus hari ini.",
                          "Saya mau secangkir kopi, tolong.", "Kereta berangkat sepuluh menit lagi."]),
}
FIXED_LANGUAGE_SPLIT = {"fr": "train", "de": "train", "es": "train", "pt": "train", "sv": "train", "tr": "train",
                        "cs": "train", "id": "train", "pl": "val", "hu": "val", "it": "test", "nl": "test",
                        "fi": "test", "ro": "test"}

# General MIDI programs (0-based) by family, with a caption name and a fixed split per program.
# Families follow the issue: piano, guitar, bass, strings, brass, woodwind, organ, synth, choir, drums;
# mallets (chromatic percussion) only adds training variety.
GM = {
    "piano": {0: ("grand piano", "train"), 1: ("bright piano", "test"), 2: ("electric grand piano", "train"),
              3: ("honky-tonk piano", "val"), 4: ("electric piano", "train"), 5: ("electric piano", "test"),
              6: ("harpsichord", "train"), 7: ("clavinet", "train")},
    "mallets": {8: ("celesta", "train"), 9: ("glockenspiel", "train"), 10: ("music box", "train"),
                11: ("vibraphone", "train"), 12: ("marimba", "train"), 13: ("xylophone", "train")},
    "organ": {16: ("organ", "train"), 17: ("percussive organ", "val"), 18: ("rock organ", "train"),
              19: ("church organ", "test"), 20: ("reed organ", "train")},
    "guitar": {24: ("acoustic guitar", "train"), 25: ("steel-string guitar", "test"), 26: ("jazz guitar", "train"),
               27: ("electric guitar", "train"), 28: ("muted electric guitar", "test"),
               29: ("overdriven guitar", "train"), 30: ("distorted electric guitar", "val")},
    "bass": {32: ("acoustic bass", "train"), 33: ("electric bass", "test"), 34: ("bass guitar", "train"),
             35: ("fretless bass", "val"), 36: ("slap bass", "train"), 37: ("slap bass", "test"),
             38: ("synth bass", "train")},
    "strings": {40: ("violin", "train"), 41: ("viola", "test"), 42: ("cello", "train"), 43: ("double bass", "test"),
                44: ("tremolo strings", "train"), 45: ("pizzicato strings", "val"), 48: ("string ensemble", "train"),
                49: ("string section", "test"), 50: ("synth strings", "train")},
    "choir": {52: ("choir", "train"), 53: ("choir singing oohs", "test"), 54: ("synth choir", "val"),
              85: ("synth voice", "train")},
    "brass": {56: ("trumpet", "train"), 57: ("trombone", "test"), 58: ("tuba", "train"), 59: ("muted trumpet", "test"),
              60: ("french horn", "train"), 61: ("brass section", "test"), 62: ("synth brass", "train"),
              63: ("synth brass", "val")},
    "woodwind": {64: ("soprano saxophone", "train"), 65: ("alto saxophone", "test"), 66: ("tenor saxophone", "train"),
                 68: ("oboe", "train"), 69: ("english horn", "test"), 70: ("bassoon", "train"),
                 71: ("clarinet", "val"), 72: ("piccolo", "train"), 73: ("flute", "test"), 74: ("recorder", "train"),
                 75: ("pan flute", "val"), 77: ("shakuhachi", "train"), 79: ("ocarina", "test")},
    "synth": {80: ("square wave synth lead", "train"), 81: ("sawtooth synth lead", "test"),
              82: ("synth lead", "train"), 84: ("synth lead", "train"), 86: ("synth lead", "val"),
              88: ("synth pad", "train"), 89: ("warm synth pad", "test"), 90: ("synth pad", "train"),
              91: ("synth pad", "test"), 92: ("synth pad", "train"), 94: ("synth pad", "val")},
}
# Drum kits: soundfont bank 128, preset -> (name, split).
DRUM_KITS = {0: ("drum kit", "train"), 8: ("room drum kit", "test"), 16: ("rock drum kit", "train"),
             24: ("electronic drum kit", "val"), 25: ("drum machine", "train"), 32: ("jazz drum kit", "test"),
             40: ("brush drum kit", "train"), 48: ("orchestral percussion", "test")}
FAMILY_WORDS = {"piano": "piano", "mallets": "mallet percussion", "organ": "organ", "guitar": "guitar",
                "bass": "bass", "strings": "strings", "choir": "choir", "brass": "brass", "woodwind": "woodwind",
                "synth": "synthesizer", "drums": "drums"}
# The ten families the instrument check asks about (mallets are training variety only).
EVAL_FAMILIES = ("piano", "guitar", "bass", "strings", "brass", "woodwind", "organ", "synth", "choir", "drums")

# Short phrases for real clips in mixtures (their own sentence tables live in mats.realclips).


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


# ----------------------------------------------------------------------------------------------
# small audio helpers (numpy; every clip is float32 mono at 44.1 kHz, N samples)


def run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({res.returncode}): {res.stderr.strip()[:300]}")


def read_wav(path: Path) -> np.ndarray:
    import soundfile as sf
    import soxr

    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    return soxr.resample(wave, sr, SR).astype(np.float32) if sr != SR else wave


def fit(wave: np.ndarray, rng: np.random.Generator, n: int = N) -> np.ndarray:
    """Place a sound in an n-sample window: a random offset when short, a random crop when long."""
    out = np.zeros(n, np.float32)
    if len(wave) >= n:
        s = int(rng.integers(0, len(wave) - n + 1))
        return wave[s : s + n].astype(np.float32)
    s = int(rng.integers(0, n - len(wave) + 1))
    out[s : s + len(wave)] = wave
    return out


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) + 1e-9


def normalise(x: np.ndarray, peak: float = 0.9) -> np.ndarray:
    m = float(np.abs(x).max())
    return (x * (peak / m)).astype(np.float32) if m > 0 else x


# ----------------------------------------------------------------------------------------------
# realism: room, band limit, microphone noise, gain (recorded in the metadata)


def realism(x: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> tuple[np.ndarray, str]:
    from scipy.signal import butter, fftconvolve, sosfilt

    notes = []
    if rng.random() < 0.6 * strength:  # room reverb: exponentially decaying noise impulse response
        rt60 = float(rng.uniform(0.15, 1.2))
        t = np.arange(int(SR * min(rt60, 1.0))) / SR
        ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        ir[0] = 1.0
        wet = float(rng.uniform(0.1, 0.5))
        rev = fftconvolve(x, ir)[: len(x)]
        x = (1 - wet) * x + wet * rev * (rms(x) / rms(rev))
        notes.append(f"reverb rt60={rt60:.2f}s wet={wet:.2f}")
    if rng.random() < 0.5 * strength:  # phone / laptop microphone: band-limited
        lo, hi = float(rng.uniform(80, 400)), float(rng.uniform(3400, 12000))
        x = sosfilt(butter(4, [lo, hi], btype="band", fs=SR, output="sos"), x)
        notes.append(f"band {lo:.0f}-{hi:.0f}Hz")
    if rng.random() < 0.6 * strength:  # microphone self-noise / room hiss
        snr = float(rng.uniform(15, 45))
        noise = rng.standard_normal(len(x))
        if rng.random() < 0.5:  # pink-ish: integrate white noise a little
            noise = np.convolve(noise, np.ones(8) / 8, mode="same")
        x = x + noise * (rms(x) / rms(noise)) * 10 ** (-snr / 20)
        notes.append(f"noise snr={snr:.0f}dB")
    gain = float(rng.uniform(-24, -1))
    x = normalise(np.asarray(x, np.float32), 10 ** (gain / 20))
    notes.append(f"gain {gain:.0f}dBFS")
    return x.astype(np.float32), "; ".join(notes)


# ----------------------------------------------------------------------------------------------
# speech (espeak-ng)


def voice_split(voice: str) -> str:
    return FIXED_VOICE_SPLIT.get(voice) or split_of("voice:" + voice)


def language_split(lang: str) -> str:
    return FIXED_LANGUAGE_SPLIT.get(lang) or split_of("lang:" + lang)


def voice_kind(voice: str) -> str:
    if voice in WHISPER:
        return "whisper"
    if voice in ROBOTIC:
        return "robot"
    return "man" if voice in MALE else "woman" if voice in FEMALE else "person"


def speak(text: str, lang: str, voice: str, rng: np.random.Generator, tmp: Path) -> np.ndarray:
    out = tmp / f"say-{rng.integers(1 << 30)}.wav"
    speed, pitch = int(rng.integers(120, 210)), int(rng.integers(20, 80))
    run(["espeak-ng", "-v", f"{lang}+{VARIANT_FILE.get(voice, voice)}", "-s", str(speed), "-p", str(pitch),
         "-w", str(out), text])
    wave = read_wav(out)
    out.unlink()
    return wave


SPEECH_VERBS = ["speaks", "talks", "is speaking", "is talking", "says something", "speaks clearly"]


def speech_captions(kind: str, language: str | None, several: int) -> tuple[str, list[str]]:
    if several:
        caps = ["several people talk", "people are talking", "a group of people converse",
                "two people speak at once" if several == 2 else "three people talk over each other",
                "voices of several people talking", "a conversation between people"]
        return "speech/several", caps
    who = {"man": ["a man", "a male voice"], "woman": ["a woman", "a female voice"], "person": ["a person", "someone"],
           "robot": ["a synthetic voice", "a robotic voice"], "whisper": ["a person", "someone"]}[kind]
    caps = [f"{w} {v}" for w in who for v in SPEECH_VERBS[:3]]
    if kind == "whisper":
        caps = ["a person whispers", "someone whispers quietly", "whispering speech", "a soft whispering voice"]
    elif kind == "robot":
        caps += ["a synthetic voice reads a sentence", "a computer voice speaks", "text-to-speech reads aloud"]
    else:
        caps += [f"{who[0]} speaks a sentence", f"speech from {who[0]}", f"{who[0]} reads aloud"]
    if language:
        caps = [f"{who[0]} speaks in {language}", f"{who[0]} talks in {language}", f"speech in {language}",
                f"someone speaks {language}"] + caps[:3]
    return f"speech/{kind}" + (f"/{language}" if language else ""), caps


# ----------------------------------------------------------------------------------------------
# music (fluidsynth + General MIDI soundfont; MIDI files written here)


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, notes: list[tuple[float, float, int, int]], program: int, drums: bool,
               bank: int = 0, tempo_bpm: float = 120.0) -> None:
    """A one-track MIDI file: notes are (start_s, dur_s, pitch, velocity); 480 ticks per beat."""
    tpb = 480
    us_per_beat = int(60_000_000 / tempo_bpm)
    ticks = tpb * tempo_bpm / 60.0  # ticks per second
    ch = 9 if drums else 0
    events = []
    for start, dur, pitch, vel in notes:
        events.append((int(start * ticks), 1, bytes([0x90 | ch, pitch, vel])))
        events.append((int((start + dur) * ticks), 0, bytes([0x80 | ch, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray(b"\x00\xff\x51\x03" + us_per_beat.to_bytes(3, "big"))
    if drums and bank:
        track += b"\x00" + bytes([0xB0 | ch, 0, 1]) + b"\x00" + bytes([0xB0 | ch, 32, 0])  # kit select
        track += b"\x00" + bytes([0xC0 | ch, bank])
    elif not drums:
        track += b"\x00" + bytes([0xC0 | ch, program])
    last = 0
    for t, _, msg in events:
        track += _varlen(t - last) + msg
        last = t
    track += _varlen(tpb) + b"\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpb) + b"MTrk" + struct.pack(">I", len(track)) + track)


SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10], "pentatonic": [0, 2, 4, 7, 9]}


def music_notes(pattern: str, rng: np.random.Generator, low: int, high: int, bpm: float) -> list[tuple]:
    beat = 60.0 / bpm
    scale = SCALES[str(rng.choice(list(SCALES)))]
    root = int(rng.integers(low, max(low + 1, high - 12)))
    pitches = sorted({root + 12 * o + s for o in range(-1, 3) for s in scale if low <= root + 12 * o + s <= high})
    notes, t = [], float(rng.uniform(0, 0.3))
    if pattern == "melody":
        i = int(rng.integers(len(pitches)))
        while t < SECONDS:
            dur = beat * float(rng.choice([0.5, 1, 1, 2]))
            notes.append((t, dur * 0.95, pitches[i], int(rng.integers(70, 115))))
            i = int(np.clip(i + rng.integers(-2, 3), 0, len(pitches) - 1))
            t += dur
    elif pattern == "chords":
        while t < SECONDS:
            i = int(rng.integers(0, max(1, len(pitches) - 4)))
            dur = beat * float(rng.choice([1, 2, 4]))
            for k, j in enumerate((i, i + 2, i + 4)):
                if j < len(pitches):  # a light strum: chord notes 15 ms apart
                    notes.append((t + 0.015 * k, dur * 0.95, pitches[j], int(rng.integers(60, 100))))
            t += dur
    else:  # arpeggio
        i = int(rng.integers(0, max(1, len(pitches) - 4)))
        seq = [i, i + 2, i + 4, i + 2]
        k = 0
        while t < SECONDS:
            j = min(seq[k % 4], len(pitches) - 1)
            notes.append((t, beat * 0.45, pitches[j], int(rng.integers(65, 105))))
            t += beat * 0.5
            k += 1
    return notes


def drum_notes(rng: np.random.Generator, bpm: float) -> list[tuple]:
    beat = 60.0 / bpm
    notes, t, k = [], 0.0, 0
    fill = rng.random() < 0.3
    while t < SECONDS:
        step = k % 8
        if step in (0, 4) or (fill and rng.random() < 0.2):
            notes.append((t, 0.1, 36, 110))  # kick
        if step in (2, 6):
            notes.append((t, 0.1, 38, 105))  # snare
        notes.append((t, 0.05, int(rng.choice([42, 42, 46])), int(rng.integers(60, 90))))  # hi-hat
        if rng.random() < 0.05:
            notes.append((t, 0.3, 49, 100))  # crash
        t += beat / 2
        k += 1
    return notes


FAMILY_RANGE = {"bass": (28, 55), "piano": (40, 88), "choir": (48, 76), "brass": (45, 80), "woodwind": (55, 90),
                "strings": (43, 88), "guitar": (40, 80), "organ": (36, 84), "synth": (40, 88), "mallets": (60, 96)}
PATTERN_WORDS = {"melody": ["plays a {speed} melody", "plays a {speed} tune"],
                 "chords": ["plays chords", "strums chords"], "arpeggio": ["plays arpeggios", "plays a rippling pattern"]}


def music_captions(family: str, name: str, pattern: str, speed: str) -> tuple[str, list[str]]:
    if family == "drums":
        caps = [f"{article(name)} keeps a {speed} beat", f"drums play a {speed} rhythm", f"a {speed} drum beat",
                f"{article(name)} plays a rhythm", "drumming", f"percussion plays a {speed} beat"]
        return "music/drums", caps
    if family == "choir":
        caps = [f"{article(name)} sings", f"{article(name)} sings a {speed} melody", "choir music",
                "voices sing together", f"a {speed} choral melody", "a choir singing"]
        return "music/choir", caps
    verbs = [w.format(speed=speed) for w in PATTERN_WORDS[pattern]]
    if pattern == "chords" and family not in ("guitar",):
        verbs = ["plays chords", "plays sustained chords"]
    caps = [f"{article(name)} {verbs[0]}", f"a solo {name} {verbs[-1]}", f"{name} music",
            f"someone plays the {name}", f"{article(FAMILY_WORDS[family])} instrument {verbs[0]}"
            if family in ("brass", "woodwind", "mallets") else f"{FAMILY_WORDS[family]} music playing",
            f"music played on {article(name)}"]
    return f"music/{family}", caps


def render_music(midi: Path, wav: Path, soundfont: str) -> np.ndarray:
    run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR), "-F", str(wav), soundfont, str(midi)])
    wave = read_wav(wav)
    midi.unlink()
    wav.unlink()
    return wave


# ----------------------------------------------------------------------------------------------
# signals (sox synth)


def sox_synth(args: list[str], tmp: Path, rng: np.random.Generator) -> np.ndarray:
    out = tmp / f"sig-{rng.integers(1 << 30)}.wav"
    run(["sox", "-n", "-r", str(SR), "-b", "16", "-c", "1", str(out), "synth", *args])
    wave = read_wav(out)
    out.unlink()
    return wave


def gate(wave: np.ndarray, on_s: float, off_s: float) -> np.ndarray:
    period = int((on_s + off_s) * SR)
    mask = (np.arange(len(wave)) % period) < int(on_s * SR)
    return wave * mask


def make_signal(rng: np.random.Generator, tmp: Path) -> tuple[np.ndarray, str, list[str]]:
    kind = str(rng.choice(["tone", "beeps", "sweep", "alarm", "dtmf", "clicks", "noise", "static"]))
    d = f"{SECONDS}"
    if kind == "tone":
        f = int(rng.integers(150, 3000))
        shape = str(rng.choice(["sine", "square", "sawtooth", "triangle"]))
        pitch = "high-pitched" if f > 1200 else "low" if f < 400 else "steady"
        x = sox_synth([d, shape, str(f)], tmp, rng)
        return x, "signal/tone", [f"a {pitch} tone", f"a continuous {pitch} electronic tone", "a steady hum of a tone",
                                  f"a {shape} wave tone sounds", "an electronic tone"]
    if kind == "beeps":
        f = int(rng.integers(500, 4000))
        on, off = float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.05, 0.6))
        x = gate(sox_synth([d, "sine", str(f)], tmp, rng), on, off)
        pitch = "high-pitched" if f > 1500 else "short"
        return x, "signal/beeps", [f"a {pitch} beep repeats", "repeated electronic beeping", "beeping",
                                   "a machine beeps several times", "beep beep beep"]
    if kind == "sweep":
        f1, f2 = sorted(rng.integers(100, 6000, size=2).tolist())
        if rng.random() < 0.5:
            f1, f2 = f2, f1
        x = sox_synth([d, "sine", f"{f1}-{f2}"], tmp, rng)
        up = f2 > f1
        return x, "signal/sweep", [f"a tone sweeps {'up' if up else 'down'}", f"a {'rising' if up else 'falling'} tone",
                                   "an electronic sweep", "a sliding electronic tone"]
    if kind == "alarm":
        f1, f2 = int(rng.integers(500, 1500)), int(rng.integers(1500, 3000))
        a, b = sox_synth([d, "square", str(f1)], tmp, rng), sox_synth([d, "square", str(f2)], tmp, rng)
        period = float(rng.uniform(0.2, 0.6))
        sel = (np.arange(len(a)) // int(period * SR)) % 2 == 0
        x = np.where(sel, a, b)
        return x, "signal/alarm", ["an electronic alarm sounds", "an alarm beeps loudly", "a warning alarm",
                                   "a two-tone alarm repeats", "an alarm goes off"]
    if kind == "dtmf":
        rows, cols = [697, 770, 852, 941], [1209, 1336, 1477]
        x = np.zeros(N, np.float32)
        t = float(rng.uniform(0, 0.5))
        while t < SECONDS - 0.3:
            tone = sox_synth(["0.15", "sine", str(int(rng.choice(rows))), "sine", str(int(rng.choice(cols))),
                              "remix", "-"], tmp, rng)
            s = int(t * SR)
            x[s : s + len(tone)] += tone[: N - s]
            t += float(rng.uniform(0.25, 0.6))
        return x, "signal/dtmf", ["telephone keypad tones", "someone dials a phone number", "touch-tone dialing beeps",
                                  "phone buttons beep"]
    if kind == "clicks":
        x = np.zeros(N, np.float32)
        rate = float(rng.uniform(1.5, 12))
        regular = rng.random() < 0.5
        t = 0.0
        while t < SECONDS:
            s = int(t * SR)
            x[s : s + 60] += np.exp(-np.arange(min(60, N - s)) / 8.0) * rng.choice([-1, 1])
            t += 1 / rate if regular else float(rng.exponential(1 / rate))
        return x, "signal/clicks", ["clicking", "a series of clicks", "rapid mechanical clicks" if rate > 6 else
                                    "slow clicks", "repeated clicking sounds"]
    if kind == "noise":
        color = str(rng.choice(["whitenoise", "pinknoise", "brownnoise"]))
        x = sox_synth([d, color], tmp, rng)
        word = color.replace("noise", "")
        return x, "signal/noise", [f"{word} noise", f"a steady hiss of {word} noise", "static noise", "a constant hiss",
                                   "noise hisses"]
    x = sox_synth([d, "whitenoise"], tmp, rng) * 0.3
    crackle = (rng.random(N) < 0.002) * rng.standard_normal(N) * 3
    x = (x + crackle).astype(np.float32)
    return x, "signal/static", ["static noise", "crackling radio static", "static crackles", "a hiss of static",
                                "interference noise from a radio"]


# ----------------------------------------------------------------------------------------------
# one clip per job


@dataclass
class Job:
    kind: str  # speech | music | signal | scene
    index: int
    seed: int
    out: Path


@dataclass
class Context:
    """What every job reads and none changes: sent to each worker once (``use_context``), not with every job."""

    soundfont: str
    real: list = field(default_factory=list)  # scene: [(split, path, phrase, label)] of real clips
    sentences: dict = field(default_factory=dict)  # split -> English sentences


_CTX: Context | None = None


def use_context(ctx: Context) -> None:
    global _CTX
    _CTX = ctx


def _speech(job: Job, rng: np.random.Generator, tmp: Path, split: str | None = None) -> tuple[np.ndarray, dict]:
    voices = [v for v in MALE + FEMALE + ROBOTIC + WHISPER if split is None or voice_split(v) == split]
    voice = str(rng.choice(voices))
    split = voice_split(voice)
    several = int(rng.choice([0, 0, 0, 0, 2, 3]))
    langs = [lg for lg in SENTENCES if language_split(lg) == split]
    use_lang = rng.random() < 0.3 and langs and voice_kind(voice) in ("man", "woman", "person")
    lang = str(rng.choice(langs)) if use_lang else "en"

    def one(v: str, language: str) -> np.ndarray:
        if language == "en":
            texts = list(rng.choice(_CTX.sentences[split], size=2))
        else:
            texts = list(rng.choice(SENTENCES[language][1], size=2, replace=False))
        return np.concatenate([speak(str(t), language, v, rng, tmp) for t in texts])

    if several:
        pool = [v for v in MALE + FEMALE if voice_split(v) == split] or [voice]
        vs = [voice] + [str(v) for v in rng.choice(pool, size=several - 1)]
        x = sum(fit(one(v, lang), rng) * float(rng.uniform(0.5, 1.0)) for v in vs)
    else:
        vs = [voice]
        x = fit(one(voice, lang), rng)
    concept, caps = speech_captions(voice_kind(voice), SENTENCES[lang][0] if lang != "en" else None, several)
    return x, {"split": split, "concept": concept, "captions": caps, "coarse": "speech", "family": "",
               "sources": "speech", "voice": "+".join(vs), "language": lang}


def _music(job: Job, rng: np.random.Generator, tmp: Path, split: str | None = None) -> tuple[np.ndarray, dict]:
    choices = [(fam, p, nm, sp) for fam, progs in GM.items() for p, (nm, sp) in progs.items()]
    choices += [("drums", p, nm, sp) for p, (nm, sp) in DRUM_KITS.items()] * 3  # kits: ~equal weight to a family
    if split is not None:
        choices = [c for c in choices if c[3] == split]
    fam, prog, name, split = choices[int(rng.integers(len(choices)))]
    bpm = float(rng.uniform(60, 180))
    speed = "slow" if bpm < 90 else "fast" if bpm > 140 else "lively"
    midi, wav = tmp / f"m-{rng.integers(1 << 30)}.mid", tmp / f"m-{rng.integers(1 << 30)}.wav"
    if fam == "drums":
        write_midi(midi, drum_notes(rng, bpm), 0, drums=True, bank=prog, tempo_bpm=120)
        pattern = "beat"
    else:
        # Wind instruments and voices play one note at a time: no chords for them.
        mono = fam in ("brass", "woodwind", "choir")
        pattern = str(rng.choice(["melody", "melody", "arpeggio"] if mono else ["melody", "melody", "chords", "arpeggio"]))
        low, high = FAMILY_RANGE[fam]
        write_midi(midi, music_notes(pattern, rng, low, high, bpm), prog, drums=False, tempo_bpm=120)
    x = fit(render_music(midi, wav, _CTX.soundfont), rng)
    concept, caps = music_captions(fam, name, pattern, speed)
    return x, {"split": split, "concept": concept, "captions": caps, "coarse": "music",
               "family": fam if fam in EVAL_FAMILIES else "", "sources": "music", "program":
               f"{'drumkit' if fam == 'drums' else 'gm'}:{prog}"}


def _signal(job: Job, rng: np.random.Generator, tmp: Path, split: str | None = None) -> tuple[np.ndarray, dict]:
    x, concept, caps = make_signal(rng, tmp)
    return fit(x, rng), {"split": split or split_of(f"seed:{job.seed}:signal:{job.index}"), "concept": concept,
                         "captions": caps, "coarse": "other", "family": "", "sources": concept.split("/")[1]}


def _scene(job: Job, rng: np.random.Generator, tmp: Path) -> tuple[np.ndarray, dict]:
    import soundfile as sf
    import soxr

    split = split_of(f"seed:{job.seed}:scene:{job.index}")
    n_src = int(rng.choice([2, 2, 3]))
    parts = []  # (wave, phrase, source label, coarse)
    real = [r for r in _CTX.real if r[0] == split]
    while len(parts) < n_src:
        pick = rng.random()
        if pick < 0.45 and real:
            _, path, phrase, label = real[int(rng.integers(len(real)))]
            if label in {q[2] for q in parts}:
                continue  # two sources of one class would make a caption like "a siren ... while a siren ..."
            wave, sr = sf.read(path, dtype="float32", always_2d=True)
            wave = wave.mean(axis=1)
            wave = soxr.resample(wave, sr, SR).astype(np.float32) if sr != SR else wave
            parts.append((fit(wave, rng), phrase, label, "other"))
        elif pick < 0.7:
            x, meta = _speech(job, rng, tmp, split)
            parts.append((x, meta["captions"][0], "speech", "speech"))
        elif pick < 0.9:
            x, meta = _music(job, rng, tmp, split)
            parts.append((x, meta["captions"][0], "music", "music"))
        else:
            x, meta = _signal(job, rng, tmp, split)
            parts.append((x, meta["captions"][0], meta["sources"], "other"))
    # Levels: the first source leads, the others sit 0-15 dB under it.
    mix = np.zeros(N, np.float32)
    for k, (x, *_rest) in enumerate(parts):
        level = 1.0 if k == 0 else 10 ** (-float(rng.uniform(0, 15)) / 20)
        mix += x / rms(x) * 0.1 * level
    p = [q[1] for q in parts]
    if n_src == 2:
        caps = [f"{p[0]} while {p[1]} in the background", f"{p[0]} as {p[1]}", f"{p[0]} and {p[1]}",
                f"{p[1]} while {p[0]}"]
    else:
        caps = [f"{p[0]} while {p[1]} and {p[2]}", f"{p[0]}, {p[1]} and {p[2]}",
                f"{p[0]} as {p[1]} in the background and {p[2]}"]
    coarse = parts[0][3]
    return mix, {"split": split, "concept": "scene/" + "+".join(sorted(q[2] for q in parts)), "captions": caps,
                 "coarse": coarse, "family": "", "sources": ";".join(q[2] for q in parts)}


MAKERS = {"speech": _speech, "music": _music, "signal": _signal, "scene": _scene}


def sound_of_captions(row: dict) -> list[str]:
    """'The sound of ...' forms of a clip's captions, from its metadata. Zero-shot prompts are usually written this
    way, and without them every prompt of that form (the real classes' sentences have them) out-scored the
    synthesized clips' own captions. They name the clip's own source, never a class list."""
    kind, concept = row.get("kind"), row.get("concept", "")
    if kind == "speech":
        who = {"man": "a man", "woman": "a woman", "robot": "a synthetic voice", "whisper": "someone whispering",
               "several": "several people", "person": "someone"}[concept.split("/")[1]]
        verb = "" if who == "someone whispering" else " talking" if who != "a synthetic voice" else " reading aloud"
        return [f"the sound of {who}{verb}", f"the sound of {who}'s voice" if who.startswith("a ") else
                f"the sound of voices"]
    if kind == "music":
        table, prog = row["program"].split(":")
        name = (DRUM_KITS if table == "drumkit" else {p: v for fam in GM.values() for p, v in fam.items()})[int(prog)][0]
        return [f"the sound of {article(name)}", f"the sound of {article(name)} playing"]
    if kind == "signal":
        return [f"the sound of {concept.split('/')[1].replace('dtmf', 'phone keypad tones')}"]
    if kind == "scene":  # the sources by name, e.g. "the sound of a dog and music"
        names = [SOURCE_NAMES.get(x, x.replace("_", " ")) for x in row["sources"].split(";")]
        return [f"the sound of {', '.join(names[:-1])} and {names[-1]}", f"{' and '.join(names)} together"]
    return []


# How a mixture's source labels read in its "the sound of ..." caption (real labels: underscores as spaces).
# Deliberately not mats.hearing.SIGNAL_NAMES: those word the evaluation prompts, and training texts should not be
# the very prompts a check scores with.
SOURCE_NAMES = {"speech": "speech", "music": "music", "tone": "a tone", "beeps": "beeping", "sweep": "a sweeping tone",
                "alarm": "an alarm", "dtmf": "phone keypad tones", "clicks": "clicking", "noise": "noise",
                "static": "static"}


def make_clip(job: Job) -> dict:
    """Make one clip and return its metadata row. Same job, same clip and row (build() skips jobs already made)."""
    import soundfile as sf

    clip_id = f"{job.kind}-{job.index:05d}"
    rng = np.random.default_rng([job.seed, list(MAKERS).index(job.kind), job.index])
    with tempfile.TemporaryDirectory(prefix="mats-corpus-") as tmpdir:
        for _ in range(5):  # a render can come out silent (a note range a program lacks): draw again, same RNG
            x, meta = MAKERS[job.kind](job, rng, Path(tmpdir))
            if np.abs(x - x.mean()).max() > 1e-3:
                break
        else:
            raise RuntimeError(f"{clip_id}: five silent renders in a row; check the synthesis tools")
    x, notes = realism(np.asarray(x, np.float32), rng)
    path = job.out / "clips" / f"{clip_id}.flac"
    tmp_path = path.with_suffix(".tmp.flac")  # written whole, then renamed: a cut-off run leaves no half clip
    sf.write(str(tmp_path), np.clip(x, -1, 1), SR, subtype="PCM_16")
    tmp_path.replace(path)
    row = {c: "" for c in COLUMNS}
    row.update({k: v for k, v in meta.items() if k in COLUMNS and k != "captions"})
    row.update({"id": clip_id, "file": f"clips/{clip_id}.flac", "kind": job.kind, "seed": job.seed, "realism": notes})
    row["captions"] = "|".join(meta["captions"] + [c for c in sound_of_captions(row) if c not in meta["captions"]])
    return row


# ----------------------------------------------------------------------------------------------
# driver


class _Inline:
    def __init__(self, ctx: Context):
        use_context(ctx)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)


def check_tools() -> list[str]:
    """Names of the missing tools / soundfont (empty when everything is installed)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not any(Path(p).is_file() for p in SOUNDFONT_CANDIDATES):
        missing.append("fluid-soundfont-gm")
    return missing


def english_sentences(data: Path | None) -> dict[str, list[str]]:
    """Sentences English voices read: AudioCaps train / val / test captions for the train / val / test voices."""
    out = {}
    for split, name in (("train", "train.csv"), ("val", "val.csv"), ("test", "test.csv")):
        path = data / "captions" / "audiocaps_v1" / name if data else None
        if path and path.is_file():
            with path.open(newline="") as fh:
                caps = [r["caption"].strip() for r in csv.DictReader(fh) if r.get("caption")]
            out[split] = sorted(set(caps))[:3000]
        else:  # no data folder (tiny test runs): a few plain sentences, still disjoint per split
            base = {"train": ["The weather is nice today.", "Please close the door when you leave."],
                    "val": ["The meeting starts at ten o'clock.", "I will call you back later."],
                    "test": ["My favourite colour is blue.", "The shop opens early on Monday."]}
            out[split] = base[split]
    return out


def real_clips(data: Path | None) -> list[tuple[str, str, str, str]]:
    """(split, path, phrase, label) for the real ESC-50 / US8K clips, split by the encoder's recording folds."""
    if data is None or not (data / "clips" / "esc50" / "labels.csv").is_file():
        return []
    # One home for the fold -> split map (mats.realclips): a scene's real clips come from the fold of its own split,
    # which is what lets `mats align --test-fold` rotate whole scenes with their recordings.
    out = []
    for dataset, file, label, fold in real_folds(data):
        table = ESC50_SENTENCES if dataset == "esc50" else US8K_SENTENCES
        out.append((REAL_SPLIT[fold], str(data / "clips" / dataset / file), table[label][0], label))
    return out


def build(out: Path, counts: dict[str, int], seed: int = 0, data: Path | None = None, workers: int = 2,
          log=print) -> Path:
    missing = check_tools()
    if missing:
        raise SystemExit(f"Missing {', '.join(missing)}: apt-get install espeak-ng fluidsynth fluid-soundfont-gm sox")
    soundfont = next(p for p in SOUNDFONT_CANDIDATES if Path(p).is_file())
    (out / "clips").mkdir(parents=True, exist_ok=True)
    ctx = Context(soundfont, real_clips(data), english_sentences(data))
    table = out / "corpus.csv"
    # Cache: a clip whose row (same seed) and file exist is not made again.
    done = {}
    if table.is_file():
        with table.open(newline="") as fh:
            done = {r["id"]: r for r in csv.DictReader(fh)
                    if r["seed"] == str(seed) and (out / r["file"]).is_file()}
    jobs = [Job(kind, i, seed, out) for kind, n in counts.items() for i in range(n)]
    todo = [j for j in jobs if f"{j.kind}-{j.index:05d}" not in done]
    t0 = time.time()
    log(f"{len(jobs) - len(todo)} clips cached, {len(todo)} to make")
    # One worker: in this process (no pool to start; what the tiny test corpus uses).
    pool = ProcessPoolExecutor(workers, initializer=use_context, initargs=(ctx,)) if workers > 1 else _Inline(ctx)
    with pool:
        for k, row in enumerate(pool.map(make_clip, todo, chunksize=8)):
            done[row["id"]] = row
            if (k + 1) % 500 == 0:
                log(f"[{time.time() - t0:6.1f}s] {k + 1}/{len(todo)} clips")
    rows = [done[f"{j.kind}-{j.index:05d}"] for j in jobs]
    with table.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    write_split_tables(out)
    log(f"[{time.time() - t0:6.1f}s] wrote {table} (+ train/val/test.csv): {len(rows)} clips")
    return table


def write_split_tables(out: Path) -> None:
    """corpus.csv cut by split: test.csv is the held-out table `mats eval --task hearing` reads."""
    with (out / "corpus.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for split in ("train", "val", "test"):
        with (out / f"{split}.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(r for r in rows if r["split"] == split)


DEFAULT_COUNTS = {"speech": 1500, "music": 2000, "signal": 500, "scene": 1500}


def add_corpus_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of `mats corpus` (one definition for the `mats` command and ``python -m mats.corpus``)."""
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (AudioCaps sentences, real clips)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scale", type=float, default=1.0, help=f"multiplies the default counts {DEFAULT_COUNTS}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    return ap


def corpus_from_cli(args: argparse.Namespace) -> int:
    counts = {k: max(1, int(round(v * args.scale))) for k, v in DEFAULT_COUNTS.items()}
    build(args.out, counts, args.seed, args.data, args.workers)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mats corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    return corpus_from_cli(add_corpus_args(ap).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
