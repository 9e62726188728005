"""MATS demo: `python app.py [--model CHECKPOINT_OR_HUB_ID ...]` (also the Hugging Face Spaces app_file)."""
import os

# Before gradio is imported: no usage analytics, no Hub telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from demo.launch import main  # noqa: E402

if __name__ == "__main__":
    main()
