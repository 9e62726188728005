"""Requests the API may send, checked before Gradio turns them into opaque errors.

Gradio reads each input (moves uploads into its cache, checks types and slider ranges) before any handler
runs, and what fails there reaches an API caller as "The upstream Gradio app has raised an exception" with
no words. ``MATSBlocks`` checks the raw values first and says, under one title, which value was wrong and
what it should be. Gradio's own refusal to read server files stays: it is only given clear words.
"""
from __future__ import annotations

import html
import inspect
import math

import gradio as gr

TITLE = "Invalid request"
CLIP_MUST_BE_UPLOADED = (
    "The clip must be an uploaded audio file (from Python: gradio_client.handle_file('clip.wav')). "
    "This server does not read paths or URLs on its own side."
)


def request_error(message: str) -> gr.Error:
    # gr.Error renders HTML in the page: escape once, here (quotes are harmless in text, so they stay readable).
    return gr.Error(html.escape(message, quote=False), title=TITLE, print_exception=False)


def parameter_names(block_fn) -> list[str]:
    """The API's names for an event's inputs: the handler's own parameter names (as view_api lists them)."""
    try:
        # Gradio fills ``request`` (gr.Request) and ``progress`` (gr.Progress) itself: they are not inputs.
        params = [p.name for p in inspect.signature(block_fn.fn).parameters.values()
                  if p.name not in ("request", "progress")]
    except (TypeError, ValueError):
        params = []
    labels = [getattr(b, "label", None) or type(b).__name__.lower() for b in block_fn.inputs]
    return params if len(params) == len(labels) else labels


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(block, name: str, value) -> str | None:
    """What is wrong with one raw input value for its component, or None when Gradio can take it."""
    if isinstance(block, gr.Audio):
        if value is None:
            return None  # the handler says "No clip yet"
        if isinstance(value, dict) and isinstance(value.get("path"), str):
            return None  # Gradio checks the path is an upload of this server (a server path stays refused)
        return f"'{name}': {CLIP_MUST_BE_UPLOADED} Got {_shown(value)}."
    if isinstance(block, gr.File):
        items = value if isinstance(value, list) else [value]
        for v in items:
            if v is None:
                continue
            if not (isinstance(v, dict) and isinstance(v.get("path"), str)):
                return (f"'{name}' must be uploaded files (from Python: gradio_client.handle_file('name.ext')); "
                        f"got {_shown(v)}.")
            shown = str(v.get("orig_name") or v["path"]).replace("\\", "/").rsplit("/", 1)[-1]
            types = [t.lower() for t in (block.file_types or []) if t.startswith(".")]
            if types and not shown.lower().endswith(tuple(types)):
                return f"'{name}' must be a {' or '.join(types)} file, got {_shown(shown)}."
        return None
    if isinstance(block, gr.Slider):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"'{name}' must be a number between {block.minimum:g} and {block.maximum:g}, got {_shown(value)}."
        if math.isfinite(value) and not block.minimum <= value <= block.maximum:
            return f"'{name}' must be between {block.minimum:g} and {block.maximum:g}, got {value:g}."
        return None  # NaN and inf reach the handler, which names the setting
    if isinstance(block, gr.Checkbox):
        if not isinstance(value, bool):
            return f"'{name}' must be true or false, got {_shown(value)}."
        return None
    if isinstance(block, (gr.Textbox, gr.Dropdown, gr.Radio)):
        if value is not None and not isinstance(value, str):
            return f"'{name}' must be text, got {_shown(value)}."
    if isinstance(block, (gr.Dropdown, gr.Radio)) and block.choices:
        values = [c[1] if isinstance(c, (tuple, list)) else c for c in block.choices]
        if value not in values:
            return f"'{name}' must be one of {', '.join(map(repr, values))}; got {_shown(value)}."
    return None


def check_request(block_fn, inputs: list) -> None:
    """Raise a titled gr.Error for the first raw input Gradio would choke on."""
    names = parameter_names(block_fn)
    if len(inputs) != len(block_fn.inputs):
        raise request_error(
            f"This endpoint takes {len(block_fn.inputs)} values ({', '.join(names)}), got {len(inputs)}. "
            "See the API page (\"Use via API\") for their order."
        )
    for block, name, value in zip(block_fn.inputs, names, inputs):
        problem = check_value(block, name, value)
        if problem:
            raise request_error(problem)


class MATSBlocks(gr.Blocks):
    """gr.Blocks whose public API events answer bad input values with clear, titled messages."""

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        public = getattr(block_fn, "api_visibility", "public") == "public" and block_fn.api_name
        if public:
            check_request(block_fn, list(inputs))
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as e:
            if not public:
                raise
            if any(isinstance(b, gr.Audio) for b in block_fn.inputs):
                # Every other value passed check_request, so Gradio refused the file: a server path, a URL, or a
                # file that was not uploaded to this server.
                raise request_error(CLIP_MUST_BE_UPLOADED) from e
            raise request_error(f"One of the values could not be read ({type(e).__name__}). "
                                "See the API page (\"Use via API\") for what each value must be.") from e
