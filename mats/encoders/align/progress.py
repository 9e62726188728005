"""One progress line format for every stage of `mats align` (seconds since the run started)."""
from __future__ import annotations

import time


def log(msg: str, t0: float) -> None:
    print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)
