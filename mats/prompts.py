"""Tasks and prompts: the one home of task names, their instructions, the label wording, and chat formatting.

The trainer draws one of five phrasings per task for each sample (as in the paper), so the LM does not overfit
one instruction; at inference a task is asked with the first phrasing, exactly as it was taught. ``ask``
samples use their own question. The evaluator's tasks are the same names plus ``hearing`` (mats.hearing).

A prompt is two strings around the audio prefix: ``before`` + [P soft audio tokens] + ``after``; the answer
follows ``after``. Base LMs (GPT-2) get a plain template; instruct LMs get their own chat template with a
short system prompt (SmolLM2's default system prompt would add ~30 tokens to every example).
"""
from __future__ import annotations

from dataclasses import dataclass

from mats.errors import ArgumentError

AUDIO_PLACEHOLDER = "<|audio|>"
# Where the instruction goes, so it can be tokenised on its own with special tokens read as plain text.
INSTRUCTION_SLOT = "<|instruction|>"


TASKS = ("caption", "classify", "ask", "music_caption")
EVAL_TASKS = ("classify", "caption", "ask", "hearing")  # what `mats eval --task` measures
EVAL_TASK_ALIASES = {"qa": "ask"}  # the evaluator's old name for ask (Clotho-AQA); kept for one release

CAPTION_PROMPTS = (
    "Describe the audio in one sentence.",
    "Write a short caption for this sound.",
    "What can be heard in this recording? Answer in one sentence.",
    "Give a brief description of the sounds in this clip.",
    "Summarise what is happening in this audio.",
)
MUSIC_CAPTION_PROMPTS = (
    "Describe this piece of music.",
    "Write a caption for this music clip: genre, instruments and mood.",
    "What does this music sound like?",
    "Give a short description of the song in this recording.",
    "Describe the style, instrumentation and feel of this track.",
)
CLASSIFY_PROMPTS = (
    "What sound events are in this audio? Answer with tags.",
    "Classify the sounds in this clip.",
    "Which sound classes can be heard? List the labels.",
    "Give the audio tags for this recording.",
    "Identify the sound sources, separated by commas.",
)
PROMPTS = {"caption": CAPTION_PROMPTS, "music_caption": MUSIC_CAPTION_PROMPTS, "classify": CLASSIFY_PROMPTS}
# The instruction per task at inference: the first phrasing the trainer draws from.
TASK_INSTRUCTIONS = {task: phrasings[0] for task, phrasings in PROMPTS.items()}

# A label as text for the encoder's text tower: zero-shot scoring, the round trip, the hearing checks.
LABEL_TEMPLATE = "the sound of {label}"
LABEL_SEPARATOR = ", "  # how a classify answer joins its tags


def instruction_for(task: str, question: str | None = None) -> str:
    if task == "ask":
        if question is not None and not isinstance(question, str):
            raise ArgumentError(f"the question must be text, got {type(question).__name__}: {question!r}")
        if not question or not question.strip():
            raise ArgumentError("the ask task needs a question: give one, e.g. 'What is making the sound?'")
        return question.strip()
    if task not in TASK_INSTRUCTIONS:
        raise ArgumentError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return TASK_INSTRUCTIONS[task]


def eval_task(task: str) -> str:
    """A `mats eval` task name, old aliases mapped to today's (``qa`` -> ``ask``)."""
    return EVAL_TASK_ALIASES.get(task, task)


def humanise_label(label: str) -> str:
    """'chirping_birds' -> 'chirping birds'; "'Train horn'" -> 'train horn'."""
    return " ".join(label.replace("_", " ").strip().strip("'\"").split()).lower()


def label_prompt(label: str, template: str = LABEL_TEMPLATE) -> str:
    """A label as the text tower reads it: ``label_prompt("chirping_birds")`` -> 'the sound of chirping birds'."""
    return template.format(label=label.replace("_", " "))


def split_tags(text: str) -> list[str]:
    """A classify answer as its tags: split on commas (or semicolons), stripped, first occurrence kept."""
    return list(dict.fromkeys(t.strip() for t in text.replace(";", ",").split(",") if t.strip()))


def tags_text(text: str) -> str:
    """A classify answer as it is shown: its tags, deduplicated, joined as the trainer joined them."""
    return LABEL_SEPARATOR.join(split_tags(text))


def resolve_style(style: str, tokenizer) -> str:
    if style == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    if style not in ("plain", "chat"):
        raise ValueError(f"prompt_style must be 'plain', 'chat' or 'auto', got '{style}'")
    if style == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt_style 'chat' needs a tokenizer with a chat template; use 'plain'")
    return style


@dataclass(frozen=True)
class PromptFormat:
    style: str  # "plain" | "chat"
    system_prompt: str

    def render(self, tokenizer, instruction: str) -> tuple[str, str]:
        """(before, after) strings around the audio prefix for one instruction."""
        if self.style == "plain":
            return "Audio:", f"\n{instruction}\nAnswer:"
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": f"{AUDIO_PLACEHOLDER}\n{instruction}"})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if text.count(AUDIO_PLACEHOLDER) != 1:
            raise ValueError("the chat template dropped or repeated the audio placeholder")
        before, after = text.split(AUDIO_PLACEHOLDER)
        return before, after

    def render_around(self, tokenizer) -> tuple[str, str, str]:
        """(before, between, after): the prompt is ``before [audio] between INSTRUCTION after``.

        The instruction is left out so a caller can tokenise it as untrusted text: a visitor who types
        ``<|im_end|>`` must not close the user turn and write the assistant's.
        """
        before, rest = self.render(tokenizer, INSTRUCTION_SLOT)
        if rest.count(INSTRUCTION_SLOT) != 1:
            raise ValueError("the chat template dropped or repeated the instruction")
        between, after = rest.split(INSTRUCTION_SLOT)
        return before, between, after

    def answer(self, tokenizer, answer: str, end_token: str | None = None) -> str:
        """Target text: what the LM must produce after ``after``, ending in ``end_token`` (default: the
        tokenizer's EOS) so it learns to stop."""
        end = end_token if end_token is not None else (tokenizer.eos_token or "")
        return (" " + answer if self.style == "plain" else answer) + end
