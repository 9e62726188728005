"""Task templates and chat formatting per LM.

A prompt is two strings around the audio prefix: ``before`` + [P soft audio tokens] + ``after``; the answer
follows ``after``. Base LMs (GPT-2) get a plain template; instruct LMs get their own chat template with a
short system prompt (SmolLM2's default system prompt would add ~30 tokens to every example).
"""
from __future__ import annotations

from dataclasses import dataclass

AUDIO_PLACEHOLDER = "<|audio|>"
# Where the instruction goes, so it can be tokenised on its own with special tokens read as plain text.
INSTRUCTION_SLOT = "<|instruction|>"

# Task names and instructions live in mats.tasks (re-exported: `from mats.prompts import instruction_for` works).
from mats.tasks import TASK_INSTRUCTIONS, TASKS, instruction_for  # noqa: E402,F401


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
