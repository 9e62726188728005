"""Command line of the demo: ``python app.py [--model A] [--model B] [--port N] ...``."""
from __future__ import annotations

import argparse
import logging
import os

from demo.clips import DEMO_MAX_SECONDS, QUEUE_SIZE
from demo.models import DEFAULT_CHECKPOINTS, ModelRegistry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python app.py",
        description="The MATS demo: caption, tag and ask about sounds in the browser.",
    )
    p.add_argument("--model", action="append", default=None, metavar="FOLDER_OR_HUB_ID",
                   help="a MATS checkpoint folder or Hub id (repeat for several; the first two are compared). "
                        f"Default: $MATS_MODELS (comma-separated) or {', '.join(DEFAULT_CHECKPOINTS)}")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-quantize", action="store_true",
                   help="keep the LMs' weights in fp32 on a CPU (default: a large LM's Linear layers get fp16 "
                        "weights packed for fbgemm, 2-3x faster, same answers; also $MATS_QUANTIZE=none)")
    p.add_argument("--host", default=None, help="address to serve on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default: $GRADIO_SERVER_PORT or the first free one from 7860)")
    p.add_argument("--max-seconds", type=float, default=DEMO_MAX_SECONDS,
                   help="use at most this many seconds of each clip (default %(default)s)")
    p.add_argument("--queue-size", type=int, default=QUEUE_SIZE,
                   help="requests that may wait in the queue; more are refused at once (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=1, help="generations running at once on the device")
    p.add_argument("--preload", action="store_true",
                   help="load the models at start instead of on first use (always on for ZeroGPU Spaces)")
    p.add_argument("--share", action="store_true", help="also make a temporary public gradio.live link")
    return p.parse_args(argv)


def model_sources(args: argparse.Namespace) -> list[str] | None:
    if args.model:
        return args.model
    env = os.environ.get("MATS_MODELS", "")
    return [s.strip() for s in env.split(",") if s.strip()] or None


def main(argv: list[str] | None = None) -> None:
    try:  # on Hugging Face Spaces: `spaces` must be imported before torch initialises CUDA (ZeroGPU)
        import spaces  # noqa: F401
    except ImportError:
        pass
    from demo.ui import build_demo, launch_kwargs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    quantize = "none" if args.no_quantize else os.environ.get("MATS_QUANTIZE", "auto")
    from mats.errors import ConfigError
    from mats.quantize import quantize_mode

    try:
        quantize = quantize_mode(quantize)
    except ConfigError as e:  # a typo in $MATS_QUANTIZE: say so at start, not on every model load
        raise SystemExit(f"MATS_QUANTIZE: {e}") from None
    registry = ModelRegistry.from_sources(model_sources(args), device=args.device, quantize=quantize)
    # ZeroGPU runs each GPU call in a worker process: a model loaded lazily there would not stay cached.
    if args.preload or os.environ.get("SPACES_ZERO_GPU") == "true":
        registry.preload()
    for line in registry.status_lines():
        logging.getLogger("demo").info("model %s", line.lstrip("- "))
    app = build_demo(registry, max_seconds=args.max_seconds, queue_size=args.queue_size,
                     concurrency=args.concurrency)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_kwargs())
