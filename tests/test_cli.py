"""The `mats` command: exit codes and one-line messages, real inference on a tiny checkpoint."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import soundfile as sf

from mats.cli import main


def _wav(path, seconds=1.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), sr)
    return path


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "mats", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("caption", "classify", "ask", "train", "eval", "bank", "push", "tiny", "explain", "timeline", "batch"):
        assert cmd in out.stdout


def test_caption_classify_ask_outputs(tiny_ckpt_gpt2, tmp_path, capsys):
    clip = _wav(tmp_path / "a.wav")
    assert main(["caption", str(tiny_ckpt_gpt2), str(clip), "--beams", "1", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip() != ""
    assert main(["classify", str(tiny_ckpt_gpt2), str(clip), "--labels", "dog,rain", "--max-new-tokens", "4"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(row["scores"]) == {"dog", "rain"}
    from mats import MATS

    m = MATS.from_pretrained(tiny_ckpt_gpt2)
    for bank in ("labels", "captions"):  # the CLI answers as MATS.classify with the same Santa bank
        assert main(["classify", str(tiny_ckpt_gpt2), str(clip), "--labels", "dog,rain", "--max-new-tokens", "4",
                     "--beams", "1", "--santa", "1", "--santa-bank", bank]) == 0
        want = m.classify(str(clip), labels=["dog", "rain"], santa=1.0, santa_bank=bank, max_new_tokens=4, num_beams=1)
        assert json.loads(capsys.readouterr().out)["output"] == want["text"]
    with pytest.raises(SystemExit):
        main(["classify", str(tiny_ckpt_gpt2), str(clip), "--labels", "dog", "--santa-bank", "both"])
    _wav(tmp_path / "b.wav", seconds=2.0)
    out = tmp_path / "out.jsonl"
    assert main(["ask", str(tiny_ckpt_gpt2), "Is it loud?", str(tmp_path), "-o", str(out), "--max-new-tokens", "4"]) == 0
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["clip"].endswith(n) for r, n in zip(rows, ("a.wav", "b.wav"))] == [True, True]
    assert all(r["question"] == "Is it loud?" for r in rows)


def test_model_is_optional_and_defaults_to_the_shipped_checkpoint(tiny_ckpt_gpt2, tmp_path, monkeypatch, capsys):
    from mats import hub

    clip = _wav(tmp_path / "a.wav")
    monkeypatch.setenv("MATS_MODEL", str(tiny_ckpt_gpt2))
    assert main(["caption", str(clip), "--beams", "1", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip() != ""
    assert main(["ask", "Is it loud?", str(clip), "--max-new-tokens", "4", "-o", str(tmp_path / "o.jsonl")]) == 0
    assert json.loads((tmp_path / "o.jsonl").read_text())["question"] == "Is it loud?"
    # a model word is only taken when it names a checkpoint
    assert hub.looks_like_checkpoint(str(tiny_ckpt_gpt2)) and hub.looks_like_checkpoint("user/mats-gpt2")
    assert not hub.looks_like_checkpoint(str(clip)) and not hub.looks_like_checkpoint(str(tmp_path))
    assert not hub.looks_like_checkpoint("What is making the sound?") and not hub.looks_like_checkpoint("x/dog.wav")
    # without MATS_MODEL the default is the shipped MATS-SmolLM2; when it is absent the error says what to do
    monkeypatch.delenv("MATS_MODEL")
    import mats.cli

    assert mats.cli.default_checkpoint() == mats.cli.REPO_ROOT / "assets" / "mats-smollm2"
    monkeypatch.setattr(mats.cli, "REPO_ROOT", tmp_path)
    assert main(["caption", str(clip)]) == 2
    err = capsys.readouterr().err
    assert "no model given" in err and "MATS_MODEL" in err
    # with no default around, --model is what makes these work
    assert main(["ask", "--model", str(tiny_ckpt_gpt2), "Why?", str(clip), "--max-new-tokens", "2"]) == 0
    assert main(["caption", "-m", str(tiny_ckpt_gpt2), str(clip), "--max-new-tokens", "2"]) == 0
    capsys.readouterr()
    assert main(["ask", str(tiny_ckpt_gpt2), "Only a question?"]) == 2
    assert "needs a question and at least one clip" in capsys.readouterr().err


def test_errors_are_one_line_with_nonzero_exit(tiny_ckpt_gpt2, tmp_path, capsys):
    assert main(["caption", str(tiny_ckpt_gpt2), str(tmp_path / "missing.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"\x00garbage" * 50)
    assert main(["caption", str(tiny_ckpt_gpt2), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.wav" in err and len(err.strip().splitlines()) == 1
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train:\n  learning_rate: 0.1\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "known" in err
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_folder_with_one_bad_clip_keeps_going(tiny_ckpt_gpt2, tmp_path, capsys):
    _wav(tmp_path / "good.wav")
    (tmp_path / "zbad.wav").write_bytes(b"nope" * 100)
    assert main(["caption", str(tiny_ckpt_gpt2), str(tmp_path), "--max-new-tokens", "3"]) == 1
    captured = capsys.readouterr()
    assert "zbad.wav" in captured.err and "good.wav" in captured.out


def test_tiny_command_writes_loadable_checkpoint(tmp_path, capsys):
    assert main(["tiny", str(tmp_path / "t"), "--lm", "llama"]) == 0
    from mats import MATS

    assert MATS.from_pretrained(tmp_path / "t", device="cpu").prompt.style == "chat"


def test_bank_build_replaces_bank(tiny_ckpt_gpt2, tmp_path, capsys):
    from mats.santa import SantaBank

    texts = tmp_path / "captions.txt"
    texts.write_text("\n".join(f"a bird sings song number {i}" for i in range(40)) + "\n")
    out = tmp_path / "adapted"
    assert main(["bank", "build", str(tiny_ckpt_gpt2), str(texts), "--out", str(out), "--clusters", "3"]) == 0
    bank = SantaBank.load(out)
    assert len(bank) == 40 and all(t.startswith("a bird sings") for t in bank.texts)
    assert bank.centroids.shape[0] == 3
    assert len(SantaBank.load(tiny_ckpt_gpt2)) == 16  # the original is untouched

    # A clean bank with other retrieval settings: stored as given and recorded in the checkpoint's config.
    from mats.config import MATSConfig
    from mats.encoders import load_encoder

    clean = tmp_path / "clean"
    assert main(["bank", "build", str(tiny_ckpt_gpt2), str(texts), "--out", str(clean), "--clusters", "3",
                 "--noise", "0", "--tau", "50", "--top-k", "4"]) == 0
    s = MATSConfig.load(clean).santa
    assert (s.bank_noise_variance, s.tau, s.top_k) == (0.0, 50.0, 4)
    bank = SantaBank.load(clean)
    enc = load_encoder(MATSConfig.load(clean).encoder, base_dir=clean)
    torch.testing.assert_close(bank.embeddings, enc.embed_text(bank.texts).float(), atol=1e-3, rtol=1e-3)
    from mats.model import MATS

    loaded = MATS.from_pretrained(clean, device="cpu")  # the settings travel in config.json, the bank's one home
    assert (loaded.santa.tau, loaded.santa.top_k) == (50.0, 4)
    assert main(["bank", "build", str(tiny_ckpt_gpt2), str(texts), "--out", str(clean), "--noise", "-1"]) == 2
    assert "must be 0 or more" in capsys.readouterr().err


def test_bank_build_out_keeps_parts_found_outside_the_checkpoint(tiny_ckpt_gpt2, tmp_path):
    """A checkpoint that names its encoder relative to itself, outside its folder ("../parts/encoder", as the
    shipped ones do): the copy written with --out elsewhere still loads."""
    import shutil

    from mats import MATS
    from mats.config import MATSConfig

    src = tmp_path / "repo" / "ckpt"
    shutil.copytree(tiny_ckpt_gpt2, src)
    shutil.move(str(src / "encoder"), tmp_path / "repo" / "encoder")
    cfg = MATSConfig.load(src)
    cfg.encoder = {**cfg.encoder, "id": "../encoder"}
    cfg.save(src)
    texts = tmp_path / "captions.txt"
    texts.write_text("\n".join(f"rain on a roof, take {i}" for i in range(30)) + "\n")
    out = tmp_path / "elsewhere" / "deeper" / "adapted"
    assert main(["bank", "build", str(src), str(texts), "--out", str(out), "--clusters", "2"]) == 0
    assert MATSConfig.load(out).encoder["id"] == "../../../repo/encoder"
    assert len(MATS.from_pretrained(out, device="cpu").santa) == 30


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_explain_command_shows_what_santa_leaned_on(tiny_ckpt_gpt2, tmp_path, capsys):
    """`mats explain` = MATS.explain (bank captions) or MATS.explain_labels (--labels), as the page's evidence."""
    from mats import MATS

    clip = _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav", seconds=1.5)
    assert main(["explain", str(tiny_ckpt_gpt2), str(tmp_path), "--santa", "0.5", "--top", "3"]) == 0
    rows = _jsonl(capsys.readouterr().out)
    assert [r["clip"] for r in rows] == [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    want = m.explain(clip, santa=0.5, top=3).to_dict()
    assert {k: v for k, v in rows[0].items() if k not in ("clip", "bank", "bank_size")} == want
    assert rows[0]["bank"] == "checkpoint" and rows[0]["bank_size"] == len(m.santa) and len(rows[0]["captions"]) <= 3

    out = tmp_path / "ev.csv"
    assert main(["explain", str(tiny_ckpt_gpt2), str(clip), "--labels", "dog, rain,siren", "-o", str(out)]) == 0
    import csv

    (row,) = list(csv.DictReader(out.open()))
    want = m.explain_labels(m.embed_clips([clip]), ["dog", "rain", "siren"])[0]
    assert row["bank"] == "labels" and json.loads(row["labels"]) == want["labels"]
    assert float(row["strength"]) == want["strength"]


def test_explain_without_a_bank_says_so(tmp_path, capsys):
    from mats.testing import make_tiny_checkpoint

    ck = make_tiny_checkpoint(tmp_path / "nobank", santa=False)
    clip = _wav(tmp_path / "a.wav")
    assert main(["explain", str(ck), str(clip)]) == 2
    assert "no Santa memory bank" in capsys.readouterr().err
    assert main(["explain", str(ck), str(clip), "--labels", "dog,rain"]) == 0  # Santa over labels needs no bank


def test_timeline_command_gives_one_row_per_window(tiny_ckpt_gpt2, tmp_path, capsys):
    """`mats timeline` = mats.timeline.timeline, one row per window, as JSON lines or CSV."""
    from mats import MATS
    from mats.timeline import timeline

    clip = _wav(tmp_path / "long.wav", seconds=22.0)  # the tiny encoder hears 10 s windows
    gen = ["--beams", "1", "--max-new-tokens", "3"]
    assert main(["timeline", str(tiny_ckpt_gpt2), str(clip), *gen]) == 0
    rows = _jsonl(capsys.readouterr().out)
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    want = timeline(m, str(clip), num_beams=1, max_new_tokens=3)
    assert len(want) > 1 and rows == [{"clip": str(clip), **w} for w in want]

    out = tmp_path / "t.csv"
    assert main(["timeline", str(tiny_ckpt_gpt2), str(clip), "--task", "classify", "--batch-size", "2", *gen,
                 "-o", str(out)]) == 0
    import csv

    got = list(csv.DictReader(out.open()))
    want = timeline(m, str(clip), task="classify", num_beams=1, max_new_tokens=3)
    assert [(float(r["start"]), float(r["end"]), r["text"]) for r in got] == [(w["start"], w["end"], w["text"])
                                                                              for w in want]
    assert main(["timeline", str(tiny_ckpt_gpt2), str(clip), "--batch-size", "0"]) == 2
    assert "batch_size must be a whole number" in capsys.readouterr().err


def test_batch_command_runs_files_zips_and_reports_failures(tiny_ckpt_gpt2, tmp_path, capsys):
    """`mats batch` = mats.batch.gather + run_batch: a row per file, a .zip opened member by member, a file that
    cannot be used gets its reason and a non-zero exit; the others are answered."""
    import zipfile

    from mats import MATS
    from mats.batch import gather, run_batch

    folder = tmp_path / "clips"
    folder.mkdir()
    a, b = _wav(folder / "a.wav"), _wav(folder / "b.wav", seconds=1.5)
    zipped = tmp_path / "more.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(_wav(tmp_path / "c.wav"), "inside/c.wav")
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    gen = ["--beams", "1", "--max-new-tokens", "3"]
    out = tmp_path / "batch.jsonl"
    assert main(["batch", str(tiny_ckpt_gpt2), str(folder), str(zipped), str(notes), "--labels", "dog,rain", *gen,
                 "-o", str(out)]) == 1
    assert "not an audio file" in capsys.readouterr().err
    rows = _jsonl(out.read_text())
    assert [r["file"] for r in rows] == [str(a), str(b), f"{zipped}/inside/c.wav", str(notes)]
    assert all(r["caption"] and set(r["scores"]) == {"dog", "rain"} for r in rows[:3])
    assert rows[3]["error"].startswith("not an audio file") and rows[3]["scores"] is None
    m = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    want = run_batch(m, gather([str(a)], tmp_path / "w"), labels=["dog", "rain"], num_beams=1, max_new_tokens=3)[0]
    assert (rows[0]["caption"], rows[0]["tags"]) == (want["caption"], want["tags"])
    assert rows[0]["scores"] == pytest.approx(want["scores"])

    assert main(["batch", str(tiny_ckpt_gpt2), str(a), *gen]) == 0  # all answered: exit 0, JSON lines on stdout
    (row,) = _jsonl(capsys.readouterr().out)
    assert row["file"] == str(a) and row["error"] == "" and row["scores"] is None
    assert main(["batch", str(tiny_ckpt_gpt2), str(tmp_path / "missing.wav")]) == 2
