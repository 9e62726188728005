"""The library's shape: the encoder builders are `mats` commands, and no mats module imports itself in a circle."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mats.cli import main

MATS = Path(__file__).resolve().parents[1] / "mats"


@pytest.mark.parametrize("command, flags", [
    ("corpus", ["--data", "--out", "--scale", "--seed", "--workers"]),
    ("align", ["--data", "--corpus", "--select", "--ensemble", "--cache-dir", "--out", "--test-fold", "--tune-block4"]),
    ("align-cv", ["--data", "--corpus", "--encoder", "--work", "--cache-dir"]),
])
def test_encoder_builders_are_mats_commands(command, flags, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"mats {command}" in out and all(f in out for f in flags), out


def test_mats_help_does_not_import_torch():
    # `mats --help` builds every subcommand's parser, the trainer's flags included; they must not pull in torch.
    code = "import sys; from mats.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_align_flags_from_the_mats_command_are_the_recipes_own():
    from mats.cli import build_parser
    from mats.encoders.align.args import align_settings, parse_args

    argv = ["--data", "d", "--corpus", "c", "--select", "--ensemble", "3", "--cache-dir", "k", "--out", "o"]
    via_cli = align_settings(build_parser().parse_args(["align", *argv]))
    assert vars(via_cli) == vars(parse_args(argv))  # same settings, same order: results.json records them all
    assert list(vars(via_cli)) == list(vars(parse_args(argv)))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(MATS.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """mats module -> the mats modules it imports, anywhere in the file (top level or inside functions: a circle
    is a design fault even where a late import keeps it from failing at import time). ``from a.b import c`` is an
    edge to a.b.c when c is a module, else to a.b. A package's __init__ importing its own children is not an edge."""
    files = {_module_name(p): p for p in MATS.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for a in node.names:
                    targets.add(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base)
        graph[name] = {t for t in targets if t in files and t != name
                       and not (is_pkg and t.startswith(name + "."))}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_circle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_under_mats():
    cycles = import_cycles(import_graph())
    assert not cycles, "mats modules that import each other in a circle: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_corpus_and_aligner_share_the_real_clip_facts_without_a_circle():
    graph = import_graph()
    assert "mats.realclips" in graph["mats.corpus"] and "mats.realclips" in graph["mats.encoders.align.data"]
    assert not {m for m in graph["mats.corpus"] if m.startswith("mats.encoders")}  # the corpus needs no aligner
    assert not {m for m in graph["mats.realclips"] if m not in ("mats.errors",)}
