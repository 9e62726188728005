"""The evaluation report: the summary table, report.md, the plots and the output files.

Outputs (``out``): results.json (every number, config, versions, clip counts, timings), predictions.jsonl
(one line per model x method x lambda x item), report.md (tables) and PNG plots (metric vs lambda per model;
per-class accuracy; matplotlib imported only when plotting).
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from mats.prompts import eval_task

__all__ = ["summary_table", "write_plots", "write_outputs"]


def _lam_key(lam: float) -> str:
    """A Santa strength as a results.json key (0.3 -> "0.3"): the loops write it, the report reads it."""
    return f"{lam:g}"


def _versions() -> dict:
    from importlib import metadata

    import mats

    out = {"mats": mats.__version__, "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "transformers", "peft", "numpy", "soundfile", "soxr"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]


def summary_table(results: dict) -> list[str]:
    """The main results table (markdown lines): what `mats eval` prints and report.md starts with."""
    task, rows = results["task"], []
    if task == "classify":
        for m in results["models"]:
            r = m["results"]
            if r is None:
                continue
            zs = r["zero_shot"]
            rows.append([m["name"], "CLAP zero-shot", "-", zs["top1"], zs["top5"], zs["balanced_top1"], zs["n"]])
            for lam, s in r["mats"].items():
                rows.append([m["name"], "MATS classify", lam, s["top1"], s["top5"], s["balanced_top1"], s["n"]])
            for lam, s in r.get("mats_rank", {}).items():
                rows.append([m["name"], "MATS rank", lam, s["top1"], s["top5"], s["balanced_top1"], s["n"]])
        return _table(["model", "method", "λ", "top-1", "top-5", "balanced top-1", "clips"], rows)
    if task == "caption":
        names = ["bleu_1", "bleu_4", "rouge_l", "cider_d", "meteor", "spice", "spider", "text_similarity"]
        for m in results["models"]:
            for lam, s in (m["results"] or {"mats": {}})["mats"].items():
                rows.append([m["name"], lam, *[s[k] for k in names], s["n"]])
        return _table(["model", "λ", "BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D", "METEOR", "SPICE", "SPIDEr",
                       "text sim.", "clips"], rows)
    for m in results["models"]:
        for lam, s in (m["results"] or {"mats": {}})["mats"].items():
            rows.append([m["name"], lam, s["accuracy"], s["yes_no"]["accuracy"], s["yes_no"]["n"],
                         s["single_word"]["accuracy"], s["single_word"]["n"], s["n"]])
    return _table(["model", "λ", "exact match", "yes/no", "n yes/no", "single word", "n single word", "questions"], rows)


def _report(results: dict, plots: dict[str, str]) -> str:
    d, task = results["data"], results["task"]
    L = [f"# MATS evaluation: {task}", ""]
    L += [f"- clips: `{results['config']['clips_dir']}`; metadata: `{results['config']['meta']}` ({d['format']} format)",
          f"- {d['clips_matched']} clips matched ({d['items']} items), {d['clips_skipped']} unreadable and skipped, "
          f"{d['missing_clips']} metadata entries without a clip, {d['unlisted_files']} files not in the metadata",
          f"- started {results['started']}, took {results['elapsed_s']:.1f} s; mats {results['versions']['mats']}, "
          f"torch {results['versions']['torch']}, transformers {results['versions']['transformers']}", ""]
    for m in results["models"]:
        g = m["generation"]
        L.append(f"- **{m['name']}**: λ {', '.join(_lam_key(l) for l in m['santa'])}; Santa bank: "
                 f"{'yes' if m['santa_bank'] else 'no'}; beams {g.get('num_beams')}, max new tokens "
                 f"{g.get('max_new_tokens')}" + (f" ({m['note']})" if m.get("note") else ""))
    L += ["", "## Results", ""] + summary_table(results) + [""]
    if task == "classify":
        L += ["Zero-shot: the encoder alone, prompt template "
              f"`{results['config']['template']}`, labels ranked by cosine similarity to the clip.",
              "", "MATS λ > 0: Santa mixes in "
              + ("the label set's own sentences (as `MATS.classify` does)."
                 if results["config"].get("santa_mixes", "labels") == "labels" else "the checkpoint's bank captions."),
              "", f"MATS classify mapping rule: {results['mapping_rule']}", ""]
        L += [f"Label set ({len(d['labels'])}): {', '.join(d['labels'])}", ""]
        for m in results["models"]:
            r = m["results"]
            if r is None:
                continue
            methods = [("zero-shot", r["zero_shot"])] + [(f"MATS λ={lam}", s) for lam, s in r["mats"].items()]
            L += [f"### Per-class top-1 accuracy: {m['name']}", ""]
            classes = list(methods[0][1]["per_class"])
            L += _table(["class", *[n for n, _ in methods]], [[c, *[s["per_class"][c] for _, s in methods]] for c in classes])
            L += ["", f"### Most frequent confusions: {m['name']}", ""]
            for n, s in methods:
                conf = ", ".join(f"{c['true']} → {c['predicted']} ({c['count']})" for c in s["confusion"]) or "none"
                L.append(f"- {n}: {conf}")
            L.append("")
    if task == "caption":
        un = {}
        for m in results["models"]:
            for s in (m["results"] or {"mats": {}})["mats"].values():
                un.update(s.get("unavailable", {}))
        for k, why in un.items():
            L.append(f"- {k.upper()} not computed: {why}")
        L += ["", "Text similarity: cosine, in the encoder's text space, between each caption and its closest "
              "reference (mean over clips).", ""]
    L += ["## Unreadable clips (skipped)", ""]
    L += [f"- `{s['clip']}`: {s['reason']}" for s in d["skipped"]] or ["none"]
    L += [""]
    if d["missing_clips"]:
        L += [f"{d['missing_clips']} metadata entries have no clip in the folder (e.g. "
              f"{', '.join(d['missing_examples'][:5])}).", ""]
    if d["notes"]:
        L += ["## Notes", ""] + [f"- {n}" for n in d["notes"]] + [""]
    L += ["## Throughput", ""]
    rows = [[m["name"], m["clips_evaluated"], len(m["santa"]), m["timings"]["load_s"], m["timings"]["encode_s"],
             sum(m["timings"]["generate_s"].values()), m["timings"]["clips_per_s"]] for m in results["models"]]
    L += _table(["model", "clips", "λ values", "load s", "encode s", "generate s", "clips/s (clip × λ)"], rows)
    L += [""]
    if plots:
        L += ["## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()] + [""]
    return "\n".join(L)


def _sweep_series(results: dict) -> tuple[str, dict[str, tuple[list[float], list[float]]], dict[str, float]]:
    """(metric name, model -> (lambdas, values), model -> zero-shot baseline) for the λ plot."""
    task = results["task"]
    metric = {"classify": ("top1", "top-1 accuracy"), "caption": ("cider_d", "CIDEr-D"),
              "ask": ("accuracy", "exact-match accuracy")}[eval_task(task)]
    series, baseline = {}, {}
    for m in results["models"]:
        r = m["results"]
        if r is None:
            continue
        pts = sorted((float(l), s[metric[0]]) for l, s in r["mats"].items() if s[metric[0]] is not None)
        series[m["name"]] = ([p[0] for p in pts], [p[1] for p in pts])
        if task == "classify":
            baseline[m["name"]] = r["zero_shot"]["top1"]
    return metric[1], series, baseline


def write_plots(results: dict, out: Path) -> tuple[dict[str, str], str | None]:
    """PNG plots (Agg canvas, no pyplot state). Returns ({title: file name}, reason when none were made)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return {}, "matplotlib is not installed (pip install matplotlib); plots skipped"
    made = {}
    ylabel, series, baseline = _sweep_series(results)
    if series:
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for i, (name, (xs, ys)) in enumerate(series.items()):
            line = ax.plot(xs, ys, marker="o", label=f"{name} (MATS)")[0]
            if name in baseline:
                ax.axhline(baseline[name], color=line.get_color(), linestyle="--", label=f"{name} (zero-shot)")
        ax.set_xlabel("Santa strength λ")
        ax.set_ylabel(ylabel)
        if results["task"] == "caption":
            ax.set_ylim(bottom=0)
        else:  # accuracies: the whole 0..1 range, so sweeps of different runs compare at a glance
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{ylabel} vs λ")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "santa_sweep.png", dpi=120)
        made[f"{ylabel} vs λ"] = "santa_sweep.png"
    if results["task"] == "classify":
        models = [m for m in results["models"] if m["results"] is not None]
        if models:
            classes = list(models[0]["results"]["zero_shot"]["per_class"])
            fig = Figure(figsize=(5 * len(models) + 1, 1.5 + 0.28 * len(classes) * max(1, len(models[0]["santa"]) / 2)))
            FigureCanvasAgg(fig)
            for j, m in enumerate(models):
                ax = fig.add_subplot(1, len(models), j + 1)
                methods = [("zero-shot", m["results"]["zero_shot"])] + [
                    (f"MATS λ={l}", s) for l, s in m["results"]["mats"].items()]
                h = 0.8 / len(methods)
                y = np.arange(len(classes))
                for k, (label, s) in enumerate(methods):
                    ax.barh(y + k * h, [s["per_class"].get(c, 0.0) for c in classes], height=h, label=label)
                ax.set_yticks(y + 0.4 - h / 2, classes, fontsize=7)
                ax.invert_yaxis()
                ax.set_xlim(0, 1)
                ax.set_xlabel("top-1 accuracy")
                ax.set_title(m["name"], fontsize=9)
                ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(out / "per_class_accuracy.png", dpi=100)
            made["per-class accuracy"] = "per_class_accuracy.png"
    return made, None


def write_outputs(results: dict, predictions: list[dict], out) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots, why_not = write_plots(results, out)
    results["outputs"] = {"results": "results.json", "predictions": "predictions.jsonl", "report": "report.md",
                          "plots": list(plots.values()), "plots_skipped": why_not}
    (out / "predictions.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions),
                                           encoding="utf-8")
    (out / "report.md").write_text(_report(results, plots) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
