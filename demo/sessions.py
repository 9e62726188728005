"""Each visitor's own caption bank: kept in memory for their browser session only.

A bank uploaded in one session is never seen by another, never touches the shared model (answers use
``MATS.with_bank``, a view that shares the weights) and never goes to disk except the temporary folder the
build embeds in. It is dropped when the visitor removes it or closes the page; at most ``MAX_SESSIONS`` banks are
kept (the oldest goes first), since a 50,000-caption bank holds ~150 MB of embeddings.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from mats.bank import CaptionBank, CaptionFile, caption_bank, encoder_key

MAX_SESSIONS = 8


@dataclass
class UserBank:
    name: str  # the uploaded file's name
    captions: CaptionFile
    built: dict[str, CaptionBank] = field(default_factory=dict)  # encoder key -> bank built with that encoder
    created: float = field(default_factory=time.time)


def session_key(request) -> str:
    """The browser session (gradio_client keeps one per Client too); one shared key without a request."""
    return getattr(request, "session_hash", None) or "no-session"


class SessionBanks:
    def __init__(self, max_sessions: int = MAX_SESSIONS):
        self.max_sessions = max_sessions
        self._banks: OrderedDict[str, UserBank] = OrderedDict()
        self._guard = threading.Lock()

    def __len__(self) -> int:
        return len(self._banks)

    def get(self, request) -> UserBank | None:
        with self._guard:
            return self._banks.get(session_key(request))

    def put(self, request, bank: UserBank) -> None:
        with self._guard:
            key = session_key(request)
            self._banks.pop(key, None)
            self._banks[key] = bank
            while len(self._banks) > self.max_sessions:
                self._banks.popitem(last=False)

    def drop(self, request) -> UserBank | None:
        with self._guard:
            return self._banks.pop(session_key(request), None)

    def build(self, user: UserBank, model) -> CaptionBank:
        """The session's bank for this model's encoder (built now if this encoder has not seen it yet)."""
        key = encoder_key(model.encoder)
        if key not in user.built:
            user.built[key] = caption_bank(model.encoder, user.captions, model.config.santa, model.config.noise_variance)
        return user.built[key]

    def model_for(self, request, model):
        """``model`` answering with the session's own bank, or ``model`` itself when the session has none."""
        user = self.get(request)
        if user is None:
            return model
        return model.with_bank(self.build(user, model).bank)
