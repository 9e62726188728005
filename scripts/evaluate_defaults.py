"""Measure how well the default checkpoints hear (issue 5, part 3), on held-out clips only.

    python scripts/evaluate_defaults.py --data ../shared/data --split assets/encoders/yamnet-minilm/split.json \
        --model assets/mats-gpt2-mini --model assets/mats-smollm2 --out assets/eval_results.json

For ESC-50 (50 labels) and UrbanSound8K (10 labels) validation clips (the encoder's validation split, which shares
no Freesound recording with anything the encoder was aligned on):
  * encoder zero-shot accuracy ("the sound of {label}"),
  * MATS classify accuracy (generated tags mapped onto the label set in the encoder's text space), lambda 0/0.3/0.6,
  * caption relevance: share of captions that name the right sound source (keyword list below), and the mean
    text similarity between the caption and the label sentence, lambda 0/0.3/0.6,
  * the round trip (mats.eval.round_trip): the clean and the training-noise text embedding of
    "the sound of {label}" for all 50 ESC-50 + 10 US8K labels, through mapper + LM, back to a label,
  * with --hearing: the hearing checks (mats.hearing) on a held-out table such as `mats corpus`'s test.csv:
    coarse / family / mixture zero-shot, and whether captions of speech say speech and captions of
    instruments name them or say music.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Words that name each class's sound source. A caption "names the right source" if it contains one of them
# (whole words, case-insensitive). Written by hand from the class names; deliberately generous with synonyms.
SOURCE_WORDS = {
    "airplane": "airplane plane aircraft jet airliner", "breathing": "breathing breathes breath breathe panting",
    "brushing_teeth": "brushing toothbrush teeth", "can_opening": "can opened opening soda tab",
    "car_horn": "horn honk honks honking", "cat": "cat cats meow meows meowing kitten",
    "chainsaw": "chainsaw saw", "chirping_birds": "bird birds chirp chirps chirping tweet singing",
    "church_bells": "bell bells church chime chimes ringing", "clapping": "clap claps clapping applause applauding",
    "clock_alarm": "alarm clock beeping beeps ringing", "clock_tick": "clock tick ticks ticking tock",
    "coughing": "cough coughs coughing", "cow": "cow cows moo moos mooing cattle",
    "crackling_fire": "fire crackling crackles crackle burning", "crickets": "cricket crickets chirping insects",
    "crow": "crow crows caw caws cawing bird", "crying_baby": "baby cries crying cry infant",
    "dog": "dog dogs bark barks barking puppy", "door_wood_creaks": "door creak creaks creaking squeak",
    "door_wood_knock": "knock knocks knocking door", "drinking_sipping": "drink drinking sip sipping slurp gulp",
    "engine": "engine motor idling revving", "fireworks": "firework fireworks explosion explosions bang pop",
    "footsteps": "footsteps steps walking walks footstep", "frog": "frog frogs croak croaks croaking",
    "glass_breaking": "glass breaking shatter shatters breaks", "hand_saw": "saw sawing wood cutting",
    "helicopter": "helicopter chopper rotor", "hen": "hen chicken chickens cluck clucks clucking",
    "insects": "insect insects buzz buzzing bee bees fly flies", "keyboard_typing": "typing keyboard types keys",
    "laughing": "laugh laughs laughing laughter", "mouse_click": "click clicks clicking mouse",
    "pig": "pig pigs oink oinks grunt grunts", "pouring_water": "pour pours pouring water liquid",
    "rain": "rain raining rainfall drizzle", "rooster": "rooster crow crows crowing cock",
    "sea_waves": "waves wave sea ocean surf", "sheep": "sheep bleat bleats baa lamb goat",
    "siren": "siren sirens emergency ambulance police", "sneezing": "sneeze sneezes sneezing",
    "snoring": "snore snores snoring", "thunderstorm": "thunder thunderstorm storm lightning",
    "toilet_flush": "toilet flush flushes flushing", "train": "train trains railway locomotive",
    "vacuum_cleaner": "vacuum cleaner hoover", "washing_machine": "washing machine washer laundry spin",
    "water_drops": "drop drops dripping drip water", "wind": "wind windy blowing blows gust",
    # UrbanSound8K
    "air_conditioner": "air conditioner conditioning hum humming fan", "children_playing": "children kids playing child",
    "dog_bark": "dog dogs bark barks barking", "drilling": "drill drills drilling",
    "engine_idling": "engine idling idles motor idle", "gun_shot": "gun gunshot gunshots shot shots gunfire",
    "jackhammer": "jackhammer hammer hammering drilling", "street_music": "music street playing band guitar",
}


def names_source(caption: str, label: str) -> bool:
    words = set(re.findall(r"[a-z]+", caption.lower()))
    return any(w in words for w in SOURCE_WORDS[label].split())


def _write_meta(rows: list[tuple[str, str]], path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "label"])
        w.writerows(rows)
    return path


def _val_rows(data: Path, split: dict, dataset: str) -> tuple[list[tuple[str, str]], list[str]]:
    if dataset == "esc50":
        meta = list(csv.DictReader(open(data / "clips/esc50/labels.csv")))
        labels = sorted({r["category"] for r in csv.DictReader(open(data / "labels/esc50/esc50.csv"))})
        by_name = {r["filename"]: r["category"] for r in meta}
    else:
        meta = list(csv.DictReader(open(data / "clips/us8k/labels.csv")))
        labels = sorted({r["class"] for r in meta})
        by_name = {r["slice_file_name"]: r["class"] for r in meta}
    names = split[dataset]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SystemExit(f"split lists {len(missing)} {dataset} clips not in labels.csv, e.g. {missing[:3]}")
    return [(n, by_name[n]) for n in names], labels


def caption_relevance(model, clips: list[Path], labels: list[str], lambdas, gen) -> dict:
    """Captions per lambda: share naming the right source; mean similarity to 'the sound of {label}'."""
    from mats.prompts import instruction_for

    emb = model.embed_clips([str(c) for c in clips])
    from mats.prompts import label_prompt

    label_text = model.encoder.embed_text([label_prompt(l) for l in labels])
    out = {}
    for lam in lambdas:
        z = model.condition(emb, lam)
        caps = []
        for i in range(0, len(clips), 8):
            caps += model.generate_from_embeddings(z[i : i + 8], [instruction_for("caption")] * len(z[i : i + 8]), **gen)
        cap_emb = model.encoder.embed_text(caps)
        sims = (cap_emb * label_text).sum(-1).tolist()
        named = [names_source(c, l) for c, l in zip(caps, labels)]
        out[str(lam)] = {"names_source": float(np.mean(named)), "similarity": float(np.mean(sims)),
                         "examples": [{"clip": c.name, "label": l, "caption": t} for c, l, t in list(zip(clips, labels, caps))[:8]]}
    return out


def main(argv=None) -> int:
    from mats.quantize import QUANTIZE_MODES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--split", default="assets/encoders/yamnet-minilm/split.json")
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--santa", default="0,0.3,0.6")
    ap.add_argument("--out", default="assets/eval_results.json")
    ap.add_argument("--beams", type=int, default=1, help="1 (greedy) keeps a CPU run short; the paper decodes with 4")
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--max-clips", type=int, default=96, help="per dataset, evenly spaced over the split (0 = all)")
    ap.add_argument("--hearing", default=None, metavar="CSV",
                    help="also run the hearing checks (mats.hearing) on this held-out table, e.g. `mats corpus`'s test.csv")
    ap.add_argument("--hearing-clips", default=None, metavar="DIR", help="folder the --hearing CSV's files are in")
    ap.add_argument("--hearing-limit", type=int, default=None, help="about N clips of the --hearing table")
    ap.add_argument("--quantize", default="auto", choices=QUANTIZE_MODES,
                    help="the LM's precision on a CPU, as MATS.from_pretrained (default: auto, what users get)")
    ap.add_argument("--encoder", default=None, metavar="DIR",
                    help="listen through this offline encoder instead of the checkpoint's own (it must share the text "
                         "tower): a validation encoder (mats align --fit-on train) with its split-val.json, "
                         "to choose lambda on audio the encoder never met")
    ap.add_argument("--update-cards", action="store_true",
                    help="also write the headline numbers into each model's config (train_info.eval) and model card")
    a = ap.parse_args(argv)
    from mats.eval import evaluate, round_trip
    from mats.hearing import ESC50_LABELS, US8K_LABELS, evaluate_hearing
    from mats.model import MATS

    t0 = time.time()
    data, split = Path(a.data), json.loads(Path(a.split).read_text())
    lambdas = [float(x) for x in a.santa.split(",")]
    gen = {"num_beams": a.beams, "max_new_tokens": a.max_new_tokens}
    for key in ("esc50", "us8k"):
        names = split[key]
        if a.max_clips and len(names) > a.max_clips:
            split[key] = [names[int(i * len(names) / a.max_clips)] for i in range(a.max_clips)]
    report: dict = {"split": {k: len(v) for k, v in split.items() if isinstance(v, list)}, "lambdas": lambdas,
                    "generation": gen, "models": {}}
    other_encoder = None
    if a.encoder:  # loaded once, shared by every --model
        from mats.encoders import load_encoder_folder

        other_encoder = load_encoder_folder(a.encoder)
    with tempfile.TemporaryDirectory() as tmp:
        for path in a.model:
            model = MATS.from_pretrained(path, quantize=a.quantize)
            entry: dict = {"precision": model.precision}
            if other_encoder is not None:
                model = model.with_encoder(other_encoder)
                entry["encoder"] = a.encoder
            for dataset, clip_dir in (("esc50", "clips/esc50"), ("us8k", "clips/us8k")):
                rows, labels = _val_rows(data, split, dataset)
                meta = _write_meta(rows, Path(tmp) / f"{dataset}.csv")
                res = evaluate([model], "classify", data / clip_dir, meta, santa=lambdas, labels=labels, gen=gen,
                               out=Path(tmp) / f"{dataset}-{Path(path).name}", progress=False)
                r = res["models"][0]["results"]
                cap = caption_relevance(model, [data / clip_dir / n for n, _ in rows], [l for _, l in rows], lambdas, gen)
                entry[dataset] = {
                    "clips": len(rows), "labels": len(labels),
                    "zero_shot_top1": r["zero_shot"]["top1"], "zero_shot_top5": r["zero_shot"].get("top5"),
                    "mats_classify_top1": {k: v["top1"] for k, v in r["mats"].items()},
                    "mats_rank_top1": {k: v["top1"] for k, v in r.get("mats_rank", {}).items()},
                    "caption": cap, "clips_per_s": res["models"][0]["timings"]["clips_per_s"],
                }
                print(f"{path} {dataset}: zero-shot {entry[dataset]['zero_shot_top1']:.3f}, MATS classify "
                      f"{entry[dataset]['mats_classify_top1']}, MATS rank {entry[dataset]['mats_rank_top1']}, names source "
                      f"{ {k: round(v['names_source'], 3) for k, v in cap.items()} }", flush=True)
            # The text-only part alone (issue "LM gap"): clean and training-noise label embeddings -> classify.
            rt = {}
            for var in (0.0, float(model.config.noise_variance)):
                per = {ds: round_trip(model, labels, noise_variance=var, gen=gen)
                       for ds, labels in (("esc50", ESC50_LABELS), ("us8k", US8K_LABELS))}
                n = sum(r["n"] for r in per.values())
                rt[f"{var:g}"] = {"top1": sum(r["top1"] * r["n"] for r in per.values()) / n,
                                  "rank_top1": sum(r["rank_top1"] * r["n"] for r in per.values()) / n, **per}
            entry["round_trip"] = rt
            print(f"{path} round trip (50 ESC-50 + 10 US8K labels): "
                  + ", ".join(f"noise {k}: {v['top1']:.3f} (rank {v['rank_top1']:.3f})" for k, v in rt.items()),
                  flush=True)
            if a.hearing:
                h = evaluate_hearing(model, a.hearing_clips or Path(a.hearing).parent, a.hearing, santa=lambdas,
                                     gen=gen, limit=a.hearing_limit)
                for c in h["captions"].values():
                    c["examples"] = c["examples"][:12]
                entry["hearing"] = h
                print(f"{path} hearing: {h['zero_shot']} | " + ", ".join(
                    f"λ={k}: speech {v['speech_captions_say_speech']} music {v['instrument_captions_say_music']}"
                    for k, v in h["captions"].items()), flush=True)
            report["models"][Path(path).name] = entry
            del model
    report["elapsed_s"] = round(time.time() - t0, 1)
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {a.out} in {report['elapsed_s']} s")
    if a.update_cards:
        for path in a.model:
            update_card(Path(path), card_metrics(report["models"][Path(path).name]))
            print(f"updated the model card of {path}")
    return 0


def card_metrics(entry: dict) -> dict:
    """The headline numbers of one model's evaluation, flat, as they appear in its model card."""
    out: dict = {}
    for var, r in entry.get("round_trip", {}).items():
        out[f"round_trip_noise{var}"] = round(r["top1"], 3)
        if "rank_top1" in r:
            out[f"round_trip_rank_noise{var}"] = round(r["rank_top1"], 3)
    for lam, r in entry.get("hearing", {}).get("captions", {}).items():
        out[f"speech_captions_say_speech_lambda{lam}"] = r["speech_captions_say_speech"]
        out[f"instrument_captions_say_music_lambda{lam}"] = r["instrument_captions_say_music"]
    for dataset in [d for d in ("esc50", "us8k") if d in entry]:
        r = entry[dataset]
        out[f"{dataset}_encoder_zero_shot"] = round(r["zero_shot_top1"], 3)
        for lam, acc in r["mats_classify_top1"].items():
            out[f"{dataset}_mats_classify_lambda{float(lam):g}"] = round(acc, 3)
        for lam, acc in r.get("mats_rank_top1", {}).items():
            out[f"{dataset}_mats_rank_lambda{float(lam):g}"] = round(acc, 3)
        for lam, cap in r["caption"].items():
            out[f"{dataset}_caption_names_source_lambda{float(lam):g}"] = round(cap["names_source"], 3)
    return out


def update_card(folder: Path, metrics: dict) -> None:
    """Write ``metrics`` into ``train_info.eval`` of the checkpoint's config.json and re-render its README."""
    from mats.config import MATSConfig
    from mats.hub import write_model_card

    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("train_info", {})["eval"] = metrics
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    write_model_card(MATSConfig.load(folder), folder)


if __name__ == "__main__":
    sys.exit(main())
