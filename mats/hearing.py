"""What the ears hear: the checks behind the "Ears" table, shared by the encoder's training script and `mats eval`.

A hearing CSV has one row per clip: ``file`` (relative to the clips folder), ``coarse`` (speech / music / other),
``family`` (one of ``FAMILIES`` for a single-instrument music clip, else empty) and ``sources`` (``;``-separated
source labels of a mixture, else one label). ``mats corpus`` (mats.corpus) writes such a CSV (``corpus.csv``).

Four zero-shot checks use only the encoder (audio embedding against text prompts, cosine similarity):

* coarse: speech / music / other. A class scores the best of its prompts; "other" is every ESC-50 and
  UrbanSound8K label and the synthetic signal kinds, so speech or music must beat 60 concrete sounds.
* family: the instrument family among the ten ``FAMILIES``, on single-instrument clips.
* mixture: on clips with two or more sources, the share of sources whose label is in the top 5 of
  ``MIXTURE_LABELS`` (ESC-50 + UrbanSound8K labels, speech, music, the signal kinds).
* ESC-50 / UrbanSound8K zero-shot are `mats eval --task classify` (the encoder zero-shot column).

Two caption checks read MATS captions: does a caption of a speech clip say speech (``SPEECH_WORDS``), and does a
caption of an instrument clip name an instrument or say music (``MUSIC_WORDS``)?
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mats.errors import DataError
from mats.prompts import label_prompt
from mats.quantize import quantize_flag

ESC50_LABELS = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow", "rain", "sea_waves",
    "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind", "pouring_water", "toilet_flush",
    "thunderstorm", "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing",
    "brushing_teeth", "snoring", "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing",
    "door_wood_creaks", "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
    "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane",
    "fireworks", "hand_saw",
)
US8K_LABELS = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
               "gun_shot", "jackhammer", "siren", "street_music")
# Synthetic signal kinds (mats.corpus's ``sources`` for signals) and how a prompt names them.
SIGNAL_NAMES = {"tone": "an electronic tone", "beeps": "beeping", "sweep": "a sweeping tone", "alarm": "an alarm",
                "dtmf": "telephone keypad tones", "clicks": "clicking", "noise": "hissing noise",
                "static": "static noise"}
FAMILIES = {"piano": "a piano", "guitar": "a guitar", "bass": "a bass guitar", "strings": "a string instrument",
            "brass": "a brass instrument", "woodwind": "a woodwind instrument", "organ": "an organ",
            "synth": "a synthesizer", "choir": "a choir", "drums": "drums"}
COARSE = ("speech", "music", "other")
TOP_K = 5


def label_text(label: str) -> str:
    """The words a prompt uses for a label: signal kinds by name, dataset labels with spaces."""
    return SIGNAL_NAMES.get(label, label.replace("_", " "))


def coarse_prompts() -> dict[str, list[str]]:
    other = sorted((set(ESC50_LABELS) | set(US8K_LABELS) | set(SIGNAL_NAMES)) - {"street_music"})  # that is music
    return {"speech": [label_prompt("speech"), "a person speaking", "people talking"],
            "music": [label_prompt("music"), "music playing", "a musical instrument playing", "a song"],
            "other": [label_prompt(label_text(l)) for l in other]}


def mixture_labels() -> list[str]:
    return sorted(set(ESC50_LABELS) | set(US8K_LABELS) | set(SIGNAL_NAMES) | {"speech", "music"})


# Caption checks: whole words, case-insensitive.
SPEECH_WORDS = re.compile(
    r"\b(speech|speak\w*|spoke\w*|voices?|talk\w*|says?|saying|said|conversation\w*|convers\w*|whisper\w*"
    r"|narrat\w*|announc\w*|chatter\w*|words?)\b", re.I)
MUSIC_WORDS = re.compile(
    r"\b(music\w*|melod\w*|tunes?|songs?|sing\w*|sung|choir|chor\w*|piano\w*|keyboard|guitar\w*|bass|violin\w*"
    r"|viola|cello\w*|strings?|orchestr\w*|trumpet\w*|trombone\w*|tuba|brass|sax\w*|flute\w*|clarinet\w*"
    r"|oboe|bassoon|recorder|woodwind\w*|organ|synth\w*|drum\w*|percussion|harpsichord|instrument\w*"
    r"|chords?|notes?|rhythm\w*|beat)\b", re.I)


def says_speech(caption: str) -> bool:
    return bool(SPEECH_WORDS.search(caption))


def says_music(caption: str) -> bool:
    return bool(MUSIC_WORDS.search(caption))


# ----------------------------------------------------------------------------------------------


def read_hearing_csv(path: str | Path) -> list[dict]:
    """Rows of a hearing CSV (columns file, coarse, family, sources; others are kept)."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"Cannot read hearing CSV {path}: {err}") from err
    need = {"file", "coarse", "family", "sources"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{path} needs columns {sorted(need)} (as `mats corpus` writes); got "
                        f"{sorted(rows[0]) if rows else 'no rows'}.")
    bad = [r["coarse"] for r in rows if r["coarse"] not in COARSE]
    if bad:
        raise DataError(f"{path}: coarse must be one of {COARSE}; found {sorted(set(bad))[:5]}.")
    return rows


@torch.inference_mode()
def zero_shot_checks(encoder, audio: torch.Tensor, rows: Sequence[dict]) -> dict:
    """The three encoder-only checks on L2-normalised audio embeddings [N, dim] (one per row)."""
    out: dict = {}
    audio = audio.float()
    # coarse: each class is the mean of its prompts' embeddings (CLIP's prompt ensemble), so "other" (60 concrete
    # sounds) does not win just by having more prompts to take a maximum over; "coarse_max" is that maximum rule.
    prompts = coarse_prompts()
    centroids, best_prompt = [], []
    for cls in COARSE:
        t = encoder.embed_text(prompts[cls])
        centroids.append(torch.nn.functional.normalize(t.mean(0), dim=0))
        best_prompt.append((audio @ t.T).amax(dim=1))
    single = [i for i, r in enumerate(rows) if len(_sources(r)) == 1]  # a mixture's coarse class is its loudest source's
    for key, scores in (("coarse", audio @ torch.stack(centroids).T), ("coarse_max", torch.stack(best_prompt, 1))):
        pred = scores.argmax(dim=1).tolist()
        ok = [COARSE[pred[i]] == rows[i]["coarse"] for i in single]
        out[key] = _acc(ok)
        if key == "coarse":
            for cls in COARSE:
                out[f"coarse_{cls}"] = _acc([o for o, i in zip(ok, single) if rows[i]["coarse"] == cls])
    # family: single-instrument clips only
    fam_idx = [i for i, r in enumerate(rows) if r["family"] in FAMILIES and len(_sources(r)) == 1]
    if fam_idx:
        names = list(FAMILIES)
        t = encoder.embed_text([label_prompt(FAMILIES[f]) for f in names])
        p = (audio[fam_idx] @ t.T).argmax(dim=1).tolist()
        out["family"] = _acc([names[j] == rows[i]["family"] for j, i in zip(p, fam_idx)])
    out["family_clips"] = len(fam_idx)
    # mixtures: each source's label in the top 5
    labels = mixture_labels()
    mix_idx = [i for i, r in enumerate(rows) if len(_sources(r)) >= 2]
    if mix_idx:
        t = encoder.embed_text([label_prompt(label_text(l)) for l in labels])
        top = (audio[mix_idx] @ t.T).topk(TOP_K, dim=1).indices.tolist()
        hits, kinds = [], []
        for i, tk in zip(mix_idx, top):
            got = {labels[j] for j in tk}
            for s in _sources(rows[i]):
                if s in labels:
                    hits.append(s in got)
                    kinds.append(s if s in ("speech", "music") else "signal" if s in SIGNAL_NAMES else "real")
        out["mixture_source_top5"] = _acc(hits)
        out["mixture_sources"] = len(hits)
        for k in ("speech", "music", "signal", "real"):
            out[f"mixture_top5_{k}"] = _acc([h for h, kk in zip(hits, kinds) if kk == k])
    out["mixture_clips"] = len(mix_idx)
    out["clips"] = len(rows)
    return out


def caption_checks(captions: Sequence[str], rows: Sequence[dict]) -> dict:
    """Shares of captions that say speech (single-source speech clips) and name an instrument or music
    (single-instrument clips)."""
    speech = [says_speech(c) for c, r in zip(captions, rows) if r["coarse"] == "speech" and len(_sources(r)) == 1]
    music = [says_music(c) for c, r in zip(captions, rows) if r["family"] in FAMILIES and len(_sources(r)) == 1]
    return {"speech_captions_say_speech": _acc(speech), "speech_clips": len(speech),
            "instrument_captions_say_music": _acc(music), "instrument_clips": len(music)}


# Yes/no questions whose answer the clip settles, and the sources that make the answer "yes" (a mixture's
# sources count: a dog barking under speech is still a dog).
YES_NO = {
    "speech": ("Is someone speaking?", {"speech"}),
    "music": ("Is music playing?", {"music", "street_music"}),
    "dog": ("Is there a dog?", {"dog", "dog_bark"}),
}
YES_NO_PER_ANSWER = 50  # at most this many "yes" and as many "no" clips per question


def yes_no_items(rows: Sequence[dict], per_answer: int = YES_NO_PER_ANSWER, seed: int = 0) -> list[tuple[int, str, bool]]:
    """Balanced (row index, question, truth) items: per question as many "no" clips as "yes" clips (seeded draw),
    so always answering yes (or no) scores 0.5."""
    rng = np.random.default_rng(seed)
    items = []
    for key, (question, yes_sources) in YES_NO.items():
        yes = [i for i, r in enumerate(rows) if yes_sources & set(_sources(r)) or r["coarse"] == key]
        taken = set(yes)
        no = [i for i in range(len(rows)) if i not in taken]
        n = min(len(yes), len(no), per_answer)
        for i in sorted(rng.choice(yes, n, replace=False).tolist()) if n else []:
            items.append((i, question, True))
        for i in sorted(rng.choice(no, n, replace=False).tolist()) if n else []:
            items.append((i, question, False))
    return items


def says_yes(answer: str) -> bool | None:
    """True / False when an answer starts with yes / no (as Clotho-AQA's answers do), None otherwise."""
    word = re.match(r"\W*(\w+)", answer.lower())
    return {"yes": True, "no": False}.get(word.group(1)) if word else None


def yes_no_checks(answers: Sequence[str], items: Sequence[tuple[int, str, bool]]) -> dict:
    """Accuracy over all items and per question; an answer that is neither yes nor no counts as wrong."""
    right = [says_yes(a) is t for a, (_, _, t) in zip(answers, items)]
    out = {"yes_no": _acc(right), "yes_no_items": len(items),
           "yes_no_unparsed": sum(says_yes(a) is None for a in answers)}
    for key, (question, _) in YES_NO.items():
        out[f"yes_no_{key}"] = _acc([r for r, (_, q, _) in zip(right, items) if q == question])
    return out


def _sources(row: dict) -> list[str]:
    return [s for s in row["sources"].split(";") if s]


def _acc(flags: Sequence[bool]) -> float | None:
    return round(float(np.mean(flags)), 4) if len(flags) else None


# ----------------------------------------------------------------------------------------------
# `mats eval --task hearing`: the whole table for MATS checkpoints, from a hearing CSV


def evaluate_hearing(model, clips_dir: str | Path, meta: str | Path, santa: Sequence[float] | None = None,
                     batch_size: int = 8, gen: dict | None = None, limit: int | None = None) -> dict:
    """Zero-shot checks of the model's encoder and caption checks of the model itself (one per Santa strength)."""
    from mats.audio import check_signal, load_clip
    from mats.errors import MATSError
    from mats.prompts import instruction_for

    rows = read_hearing_csv(meta)
    if limit:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    clips, kept, skipped = [], [], []
    for r in rows:
        try:
            clips.append(check_signal(load_clip(Path(clips_dir) / r["file"], target_sr=model.encoder.sample_rate)))
            kept.append(r)
        except (MATSError, OSError, RuntimeError, ValueError) as err:
            skipped.append({"file": r["file"], "reason": f"{type(err).__name__}: {err}"})
    if not kept:
        raise DataError(f"None of the {len(rows)} clips listed in {meta} could be read under {clips_dir}.")
    emb = torch.cat([model.embed_clips(clips[s : s + batch_size]).float() for s in range(0, len(clips), batch_size)])
    result: dict = {"zero_shot": zero_shot_checks(model.encoder, emb.cpu(), kept), "captions": {}, "skipped": skipped}
    idx = [i for i, r in enumerate(kept) if len(_sources(r)) == 1
           and (r["coarse"] == "speech" or r["family"] in FAMILIES)]
    gen = {k: v for k, v in (gen or {}).items() if v is not None}
    for lam in santa if santa is not None else [float(model.config.santa.strength)]:
        z = model.condition(emb[idx].to(model.device), lam)
        texts: list[str] = []
        for s in range(0, len(idx), batch_size):
            n = len(idx[s : s + batch_size])
            texts += model.generate_from_embeddings(z[s : s + n], [instruction_for("caption")] * n, **gen)
        sub = [kept[i] for i in idx]
        result["captions"][f"{lam:g}"] = {**caption_checks(texts, sub),
                                          "examples": [{"file": r["file"], "caption": t} for r, t in zip(sub, texts)]}
        # Yes/no questions the clip settles, balanced per question (YES_NO).
        items = yes_no_items(kept)
        zq = model.condition(emb[[i for i, _, _ in items]].to(model.device), lam)
        answers: list[str] = []
        for s in range(0, len(items), batch_size):
            part = items[s : s + batch_size]
            answers += model.generate_from_embeddings(zq[s : s + len(part)], [instruction_for("ask", q)
                                                                              for _, q, _ in part], **gen)
        result["captions"][f"{lam:g}"].update(yes_no_checks(answers, items))
        result["captions"][f"{lam:g}"]["yes_no_examples"] = [
            {"file": kept[i]["file"], "question": q, "truth": "yes" if t else "no", "answer": a}
            for (i, q, t), a in list(zip(items, answers))[:: max(1, len(items) // 12)]]
    return result


def hearing_from_cli(args) -> int:
    """`mats eval --task hearing --model CKPT --clips DIR --meta corpus.csv`: prints the table, writes results.json."""
    import json

    from mats.model import MATS

    santa = [float(s) for s in args.santa.split(",")] if args.santa else None
    out = {"task": "hearing", "meta": str(args.meta), "models": {}}
    for name in args.model:
        model = MATS.from_pretrained(name, device=args.device,
                                     quantize=quantize_flag(args))
        res = evaluate_hearing(model, args.clips, args.meta, santa=santa, batch_size=args.batch_size,
                               gen={"num_beams": args.beams, "max_new_tokens": args.max_new_tokens}, limit=args.limit)
        out["models"][name] = res
        z = res["zero_shot"]
        print(f"{name}: coarse {z.get('coarse')} | family {z.get('family')} ({z['family_clips']} clips) | "
              f"mixture source in top 5 {z.get('mixture_source_top5')} ({z['mixture_clips']} clips)")
        for lam, c in res["captions"].items():
            print(f"  λ={lam}: speech captions that say speech {c['speech_captions_say_speech']} "
                  f"({c['speech_clips']}) | instrument captions that name it or say music "
                  f"{c['instrument_captions_say_music']} ({c['instrument_clips']}) | yes/no {c.get('yes_no')} "
                  f"({c.get('yes_no_items')} balanced items: speech {c.get('yes_no_speech')}, music "
                  f"{c.get('yes_no_music')}, dog {c.get('yes_no_dog')})")
        if res["skipped"]:
            print(f"  warning: {len(res['skipped'])} unreadable clip(s) skipped, e.g. {res['skipped'][0]['file']}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}/results.json")
    return 0
