"""The page: layout and event wiring. The logic lives in ``demo.handlers``; this file only arranges it.

API: ``/caption``, ``/classify``, ``/ask``, ``/compare``, ``/santa`` (Santa evidence), ``/bank`` and
``/bank_remove`` (your caption bank), ``/timeline`` and ``/batch`` are public and stable for ``gradio_client``
users; the page's helper events (clip facts, slider defaults, status refresh) are private.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from demo.clips import DEMO_MAX_SECONDS, QUEUE_SIZE
from demo.handlers import NO_BANK, SANTA_INFO, TIMELINE_TASKS, Handlers, no_model_markdown
from demo.models import PAPER_URL, ModelRegistry
from demo.requests import MATSBlocks

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
# Example clips shipped with the demo (CC0, see assets/examples/ATTRIBUTION.md) and their captions in the page.
EXAMPLE_CLIPS = [
    ("dog.flac", "Dog barking"),
    ("rain.flac", "Heavy rain"),
    ("church_bells.flac", "Church bells"),
    ("crying_baby.flac", "Crying baby"),
    ("speech.flac", "Spoken sentence"),
]
EXAMPLE_QUESTIONS = [
    "What is making the sound?",
    "Is this indoors or outdoors?",
    "Is there an animal in the clip?",
    "Is someone speaking?",
    "What could be happening here?",
]
INTRO = (
    "# MATS: hear with a language model trained on text only\n"
    "Record or upload a sound, then caption it, tag it, or ask about it. "
    f"[Paper (ICML 2025)]({PAPER_URL})"
)
ABOUT = f"""
**MATS** ([arXiv 2502.13433]({PAPER_URL}), ICML 2025) gives a language model ears without ever training on
audio. A frozen audio-text encoder (LAION-CLAP style) puts captions and clips into one embedding space. During
training the model only sees *text*: caption embeddings plus a little Gaussian noise go through a mapper that
turns them into soft prefix tokens for a causal LM (with LoRA). At inference the clip's *audio* embedding takes
the caption's place.

**Santa strength λ.** Audio and text embeddings never line up exactly (the modality gap). Santa looks up the
captions in a memory bank whose embeddings are closest to the clip and mixes them in:
`z = (1 − λ)·audio + λ·Σ wᵢ·textᵢ`. λ = 0 uses the clip alone; larger values lean on similar captions
(more fluent, less specific). The slider starts at the checkpoint's own default.

**Streaming.** With beam size 1 the answer appears token by token. Beam search (size 2+, the paper uses 4) usually
reads better but arrives in one piece, because beams are only final at the end.

**Limits.** Clips are averaged to mono, resampled for the encoder and cut into fixed windows (no random crops, so
the same clip always gets the same greedy answer). The demo listens to the first minute; files over 10 minutes are
refused.
"""
CSS = """
.mats-status { font-size: 0.85em; opacity: 0.85; min-height: 1.5em; }
.mats-facts ul { margin-top: 0; }
.mats-evidence { font-size: 0.9em; }
.mats-evidence table { font-size: 0.92em; }
"""


def example_paths() -> list[tuple[str, str]]:
    return [(str(EXAMPLES_DIR / name), label) for name, label in EXAMPLE_CLIPS if (EXAMPLES_DIR / name).is_file()]


def theme() -> gr.themes.Base:
    # System fonts: the default theme fetches Google Fonts, which an offline machine cannot reach.
    return gr.themes.Soft(
        primary_hue="indigo",
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )


def launch_kwargs() -> dict:
    """What ``Blocks.launch`` needs besides host/port (Gradio 6 takes theme and CSS here)."""
    return {"theme": theme(), "css": CSS, "ssr_mode": False, "max_file_size": "500mb"}


def _gpu(fn):
    """On a ZeroGPU Space, ask for a GPU while the handler runs; elsewhere use the function as is."""
    try:
        import spaces  # only installed on Hugging Face Spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=120)(fn)


def build_demo(registry: ModelRegistry, max_seconds: float = DEMO_MAX_SECONDS, queue_size: int = QUEUE_SIZE,
               concurrency: int = 1) -> gr.Blocks:
    """The whole page. ``concurrency``: generations that may run at once on the device (all models share it)."""
    h = Handlers(registry, max_seconds=max_seconds)
    choices = registry.dropdown_choices()
    first = choices[0][1] if choices else None
    second = choices[1][1] if len(choices) > 1 else first
    d = registry.defaults(first)
    # One concurrency group per device: two models on one GPU (or two CPU cores) must not run at once
    # and fight over memory and threads. Each model additionally serialises its own generate() with MATS.lock.
    device_group = {"concurrency_id": f"mats-{registry.device_name}", "concurrency_limit": concurrency}
    facts_group = {"concurrency_id": "clip-facts", "concurrency_limit": 4}  # light CPU work, separate from generation

    with MATSBlocks(title="MATS: audio captioning with a text-trained LM") as demo:
        gr.Markdown(INTRO)
        if not choices:
            gr.Markdown(no_model_markdown(registry), elem_id="no-model")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip",
                                 elem_id="clip")
                examples = example_paths()
                if examples:
                    gr.Examples([[p] for p, _ in examples], inputs=[audio], example_labels=[l for _, l in examples],
                                label="Example clips (CC0: four from ESC-50, one synthesized)", cache_examples=False,
                                api_visibility="private")
                facts = gr.Markdown("*No clip yet: record, upload, or pick an example.*", elem_id="clip-facts",
                                    elem_classes=["mats-facts"])
                spec = gr.Image(label="Spectrogram (log-mel)", type="numpy", format="png", interactive=False,
                                height=220, elem_id="spectrogram")
            with gr.Column(scale=6):
                model = gr.Dropdown(choices=choices, value=first, label="Model", elem_id="model",
                                    interactive=bool(choices))
                santa = gr.Slider(0.0, 1.0, value=d.santa, step=0.05, label="Santa strength λ",
                                  info=SANTA_INFO if d.has_santa else
                                  "This checkpoint has no Santa memory bank: the slider has no effect.",
                                  elem_id="santa")
                with gr.Accordion("Generation settings", open=False):
                    beams = gr.Slider(1, 8, value=1, step=1, label="Beam size",
                                      info="1 streams the answer token by token; 2+ is beam search (paper: 4), "
                                           "shown when finished.")
                    max_tokens = gr.Slider(4, 128, value=d.max_new_tokens, step=1, label="Max new tokens")
                    with gr.Row():
                        sample = gr.Checkbox(value=False, label="Sampling", info="off = deterministic")
                        temperature = gr.Slider(0.1, 2.0, value=d.temperature if d.temperature > 0 else 1.0,
                                                step=0.05, label="Temperature", info="used when sampling")
                settings = [santa, beams, max_tokens, sample, temperature]
                with gr.Accordion("Your caption bank (this session only)", open=False, elem_id="bank"):
                    gr.Markdown("Swap Santa's memory for captions of your own domain: no training. Upload a .txt "
                                "(one caption per line) or a .csv with a 'caption' column, up to 50,000 lines.")
                    bank_file = gr.File(label="Caption file (.txt or .csv)", file_types=[".txt", ".csv"],
                                        type="filepath", elem_id="bank-file", height=90)
                    with gr.Row():
                        bank_btn = gr.Button("Build my bank", variant="secondary", elem_id="bank-btn")
                        bank_remove = gr.Button("Remove it", elem_id="bank-remove-btn")
                    bank_md = gr.Markdown(NO_BANK, elem_id="bank-status", elem_classes=["mats-status"])

                with gr.Tabs():
                    with gr.Tab("Caption", id="caption"):
                        cap_btn = gr.Button("Caption", variant="primary", elem_id="caption-btn")
                        cap_out = gr.Textbox(label="Caption", lines=3, interactive=False, buttons=["copy"],
                                             elem_id="caption-out")
                        cap_status = gr.Markdown(elem_id="caption-status", label="caption status", show_label=False,
                                                 elem_classes=["mats-status"])
                        cap_evidence = gr.Markdown(elem_id="caption-evidence", elem_classes=["mats-evidence"])
                    with gr.Tab("Classify", id="classify"):
                        labels = gr.Textbox(label="Your labels (optional)",
                                            placeholder="dog, rain, siren, church bells",
                                            info="Comma-separated. Scored zero-shot by the audio-text encoder; "
                                                 "Santa mixes in the nearest of them for the tags.",
                                            elem_id="labels")
                        cls_btn = gr.Button("Classify", variant="primary", elem_id="classify-btn")
                        cls_out = gr.Textbox(label="MATS sound tags", lines=2, interactive=False,
                                             elem_id="classify-out")
                        cls_scores = gr.Label(label="Zero-shot scores for your labels", num_top_classes=10,
                                              elem_id="classify-scores")
                        cls_status = gr.Markdown(elem_id="classify-status", label="classify status", show_label=False,
                                                 elem_classes=["mats-status"])
                        cls_evidence = gr.Markdown(elem_id="classify-evidence", elem_classes=["mats-evidence"])
                    with gr.Tab("Ask", id="ask"):
                        question = gr.Textbox(label="Question", placeholder="What is making the sound?",
                                              elem_id="question")
                        gr.Examples([[q] for q in EXAMPLE_QUESTIONS], inputs=[question], label="Example questions",
                                    cache_examples=False, api_visibility="private")
                        ask_btn = gr.Button("Ask", variant="primary", elem_id="ask-btn")
                        ask_out = gr.Textbox(label="Answer", lines=3, interactive=False, buttons=["copy"],
                                             elem_id="ask-out")
                        ask_status = gr.Markdown(elem_id="ask-status", label="ask status", show_label=False,
                                                 elem_classes=["mats-status"])
                        ask_evidence = gr.Markdown(elem_id="ask-evidence", elem_classes=["mats-evidence"])
                    with gr.Tab("Compare", id="compare"):
                        with gr.Row():
                            model_a = gr.Dropdown(choices=choices, value=first, label="Model A", elem_id="model-a",
                                                  interactive=bool(choices))
                            model_b = gr.Dropdown(choices=choices, value=second, label="Model B", elem_id="model-b",
                                                  interactive=bool(choices))
                        with gr.Row():
                            cmp_task = gr.Radio(["Caption", "Classify", "Ask"], value="Caption", label="Task",
                                                elem_id="compare-task")
                            cmp_question = gr.Textbox(label="Question (for Ask)", value=EXAMPLE_QUESTIONS[0],
                                                      elem_id="compare-question")
                        cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
                        with gr.Row(equal_height=True):
                            with gr.Column(min_width=160):
                                cmp_a = gr.Textbox(label="Model A says", lines=3, interactive=False,
                                                   elem_id="compare-a")
                                cmp_a_status = gr.Markdown(elem_id="compare-a-status", label="compare a status",
                                                           show_label=False, elem_classes=["mats-status"])
                            with gr.Column(min_width=160):
                                cmp_b = gr.Textbox(label="Model B says", lines=3, interactive=False,
                                                   elem_id="compare-b")
                                cmp_b_status = gr.Markdown(elem_id="compare-b-status", label="compare b status",
                                                           show_label=False, elem_classes=["mats-status"])
                    with gr.Tab("Timeline", id="timeline"):
                        gr.Markdown("One answer per window of the whole clip (up to 10 minutes), with the window "
                                    "boundaries on the spectrogram and a CSV to download.")
                        with gr.Row():
                            tl_task = gr.Radio(list(TIMELINE_TASKS), value="Caption", label="Each window gets",
                                               elem_id="timeline-task")
                            tl_btn = gr.Button("Timeline", variant="primary", elem_id="timeline-btn")
                        tl_status = gr.Markdown(elem_id="timeline-status", elem_classes=["mats-status"])
                        tl_table = gr.Dataframe(label="Timeline", interactive=False, wrap=True,
                                                elem_id="timeline-table")
                        tl_spec = gr.Image(label="Windows on the spectrogram", type="numpy", format="png",
                                           interactive=False, height=220, elem_id="timeline-spectrogram")
                        tl_csv = gr.File(label="Timeline (CSV)", interactive=False, elem_id="timeline-csv")
                    with gr.Tab("Batch", id="batch"):
                        gr.Markdown("Many clips at once: upload audio files or a .zip of them (up to 200 files, "
                                    "10 minutes each, 500 MB in all).")
                        batch_files = gr.File(label="Clips or a .zip", file_count="multiple", type="filepath",
                                              elem_id="batch-files", height=110)
                        batch_labels = gr.Textbox(label="Labels to score (optional)", placeholder="dog, rain, siren",
                                                  info="Comma-separated; each file gets a zero-shot score per label.",
                                                  elem_id="batch-labels")
                        batch_btn = gr.Button("Run the batch", variant="primary", elem_id="batch-btn")
                        batch_status = gr.Markdown(elem_id="batch-status", elem_classes=["mats-status"])
                        batch_table = gr.Dataframe(label="One row per file", interactive=False, wrap=True,
                                                   elem_id="batch-table")
                        batch_csv = gr.File(label="Results (CSV)", interactive=False, elem_id="batch-csv")
                evidence_json = gr.JSON(visible=False, label="Santa evidence")
                # The encoder's AudioSet tags as an API endpoint of their own (the page shows them in each panel).
                tags_btn = gr.Button("Tags", visible=False, elem_id="tags-btn")
                tags_md = gr.Markdown(visible=False, elem_id="tags-line")
                tags_json = gr.JSON(visible=False, label="AudioSet tags")

        with gr.Accordion("About MATS and this demo", open=False):
            gr.Markdown(ABOUT)
            models_md = gr.Markdown(h.about_models(), elem_id="models-status")

        # -- events ---------------------------------------------------------------------------------------
        private = {"api_visibility": "private"}
        audio.change(h.clip_facts, [audio, model], [facts, spec], show_progress="minimal", **facts_group, **private)
        # A new clip makes the old answers stale: clear them rather than show them next to it.
        answers = [cap_out, cap_status, cls_out, cls_scores, cls_status, ask_out, ask_status,
                   cmp_a, cmp_b, cmp_a_status, cmp_b_status, cap_evidence, cls_evidence, ask_evidence, tl_status,
                   batch_status]
        audio.change(lambda: [None if c is cls_scores else "" for c in answers], None, answers, queue=False,
                     show_progress="hidden", **private)
        model.change(h.model_defaults, [model], [santa, max_tokens], queue=False, **private).then(
            h.clip_facts, [audio, model], [facts, spec], show_progress="minimal", **facts_group, **private)

        runs = [
            cap_btn.click(_gpu(h.caption), [audio, model, *settings], [cap_out, cap_status],
                          api_name="caption", **device_group),
            cls_btn.click(_gpu(h.classify), [audio, labels, model, *settings], [cls_out, cls_scores, cls_status],
                          api_name="classify", **device_group),
            ask_btn.click(_gpu(h.ask), [audio, question, model, *settings], [ask_out, ask_status],
                          api_name="ask", **device_group),
            question.submit(_gpu(h.ask), [audio, question, model, *settings], [ask_out, ask_status],
                            **device_group, **private),
            cmp_btn.click(_gpu(h.compare), [audio, cmp_task, cmp_question, model_a, model_b, *settings],
                          [cmp_a, cmp_b, cmp_a_status, cmp_b_status], api_name="compare", **device_group),
        ]
        # Santa evidence under each answer, once the answer is there (the clip's embedding is remembered).
        for i, (run, shown) in enumerate(zip(runs[:4], [cap_evidence, cls_evidence, ask_evidence, ask_evidence])):
            if shown is cls_evidence:  # typed labels: Santa mixed in those, not bank captions (MATS.classify)
                run.success(_gpu(h.classify_evidence), [audio, labels, model, santa], [shown, evidence_json],
                            show_progress="minimal", **device_group, **private)
                continue
            run.success(_gpu(h.evidence), [audio, model, santa], [shown, evidence_json], show_progress="minimal",
                        **device_group, **({"api_name": "santa"} if i == 0 else private))
        runs += [
            gr.on([bank_btn.click, bank_file.upload], _gpu(h.bank_upload), [bank_file, model], [bank_md],
                  api_name="bank", **device_group),
            bank_remove.click(h.bank_remove, None, [bank_md], api_name="bank_remove"),
            tl_btn.click(_gpu(h.timeline), [audio, tl_task, model, *settings], [tl_table, tl_spec, tl_csv, tl_status],
                         api_name="timeline", **device_group),
            batch_btn.click(_gpu(h.batch), [batch_files, batch_labels, model, *settings],
                            [batch_table, batch_csv, batch_status], api_name="batch", **device_group),
        ]
        tags_btn.click(h.tags, [audio, model], [tags_md, tags_json], api_name="tags", **device_group)
        for run in runs:  # "which models are loaded" follows what the last request loaded
            run.then(h.about_models, None, models_md, queue=False, **private)
        demo.load(h.about_models, None, models_md, queue=False, **private)
        demo.load(h.bank_status, None, bank_md, queue=False, **private)
        demo.unload(h.end_session)

    demo.queue(max_size=queue_size, default_concurrency_limit=1)
    return demo
