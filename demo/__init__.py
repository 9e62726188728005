"""The MATS Gradio demo (UI only; the model lives in ``mats``). Entry point: ``python app.py``."""
from demo.models import ModelRegistry

__all__ = ["ModelRegistry", "build_demo", "main"]


def __getattr__(name):
    # Lazy, so `import demo` does not pull in gradio until the page is built.
    if name == "build_demo":
        from demo.ui import build_demo

        return build_demo
    if name == "main":
        from demo.launch import main

        return main
    raise AttributeError(f"module 'demo' has no attribute '{name}'")
