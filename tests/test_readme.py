"""The README stays honest: its commands run, its links resolve, and it stays short.

Commands are parsed from the README's ```bash blocks, so a command added there is tested here without editing
this file. Every command of the first screen runs (the set-up commands and the demo); every `mats` command runs on
the tiny offline model where the real one would take minutes, or as `--help` (with each option the README passes
checked against that help) where it needs data, a network or a GPU. Anything else must be named in NOT_RUN.
"""
import argparse
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
MAX_BYTES = 12 * 1024
FIRST_SCREEN_LINES = 45  # after the Spaces front matter: the intro, the set-up commands and the demo

# `mats` commands that run for real on the tiny random checkpoint (seconds); the others get `--help`.
RUN_ON_TINY = {"caption", "classify", "ask", "tiny", "explain", "timeline", "batch", "tags"}
# Checkpoints the README names; the tiny checkpoint stands in for them.
SHIPPED = {"assets/mats-smollm2", "assets/mats-gpt2-mini"}
# Commands that are not run, and why (each still has a check of its own below).
NOT_RUN = {
    "apt-get": "installs system packages (checked: CI installs the same packages)",
    "hf": "needs a Hub account and the network (checked: `hf ... --help` accepts the options)",
}
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def _body(text: str) -> str:
    """The README without its Spaces front matter."""
    return text.split("\n---\n", 1)[1] if text.startswith("---\n") else text


def bash_commands(text: str, first_lines: int | None = None) -> list[str]:
    """Each command of the ```bash blocks: continuation lines joined, comments dropped. A `&&` chain stays one
    command (its parts share their files); `parts` splits it."""
    body = _body(text)
    if first_lines is not None:
        body = "\n".join(body.splitlines()[:first_lines])
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words).replace(" '&&' ", " && "))
    return commands


def parts(command: str) -> list[str]:
    return [p.strip() for p in command.split(" && ")]


def split_env(command: str) -> tuple[dict, list[str]]:
    words = shlex.split(command)
    env = {}
    while words and ENV_ASSIGNMENT.match(words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def _id(command: str) -> str:
    return command if len(command) <= 60 else command[:57] + "..."


ALL = bash_commands(TEXT)
FIRST_SCREEN = bash_commands(TEXT, FIRST_SCREEN_LINES)
MATS = [c for c in ALL if all(split_env(p)[1][:1] == ["mats"] for p in parts(c))]
OTHER = [c for c in ALL if c not in FIRST_SCREEN and c not in MATS]


def _mats_parser() -> argparse.ArgumentParser:
    from mats.cli import build_parser

    return build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _options(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if w.startswith("-") and w not in ("-", "--")]


def _assert_options_in_help(words: list[str], help_text: str, command: str) -> None:
    for opt in _options(words):
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", help_text), \
            f"the README passes {opt} to `{command}`, but its --help does not list it"


# -- the README itself -------------------------------------------------------------------------------------------

def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes; keep it at most {MAX_BYTES} (move details to docs/)"


def test_relative_links_point_to_files():
    links = re.findall(r"\]\(([^)\s]+)\)", _body(TEXT))
    relative = [l for l in links if not re.match(r"^[a-z][a-z0-9+.-]*:", l) and not l.startswith("#")]
    assert relative, "expected links to docs/"
    missing = [l for l in relative if not (ROOT / l.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_docs_pages_are_linked_and_their_links_resolve():
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", TEXT))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"docs pages not linked from the README: {sorted(pages - linked)}"
    for page in sorted(pages):
        for link in re.findall(r"\]\(([^)\s]+)\)", (ROOT / page).read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith("#"):
                continue
            target = (ROOT / page).parent / link.split("#", 1)[0]
            assert target.exists(), f"{page} links to a missing file: {link}"


def test_front_matter_is_the_space_config():
    assert TEXT.startswith("---\n")
    front = TEXT.split("\n---\n", 1)[0]
    for key in ("sdk: gradio", "app_file: app.py", "python_version:"):
        assert key in front


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    tests = [c for c in FIRST_SCREEN if "pytest" in c]
    assert tests == ["python -m pytest"], f"the README's test command changed: {tests}"
    assert re.search(r"^python -m pytest$", ci, re.M), ".ci/run must call the README's test command"
    assert "pip install -q -r requirements.txt" in ci


def test_every_command_is_tested_or_named():
    for command in ALL:
        _, words = split_env(command)
        if command in FIRST_SCREEN or command in MATS:
            continue
        assert words[0] in NOT_RUN, (f"the README shows `{command}`, which tests/test_readme.py neither runs nor "
                                     "names in NOT_RUN; add a check for it")


# -- the first screen ----------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


def _python(words: list[str]) -> list[str]:
    return [sys.executable, *words[1:]] if words[0] in ("python", "python3") else words


@pytest.mark.parametrize("command", [c for c in FIRST_SCREEN if split_env(c)[1][0] not in ("mats",)], ids=_id)
def test_first_screen_command(command, tmp_path):
    env, words = split_env(command)
    if words[:2] == ["pip", "install"]:
        # Everything the command would install is already there, and pip accepts the file as written.
        out = _run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                    *words[2:]], timeout=120, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
    elif words[:3] == ["python", "-m", "pytest"]:
        # Collecting is what this test can do without running the suite inside itself.
        out = _run([*_python(words), "--collect-only", "-q", "-p", "no:cacheprovider"], timeout=180, env=env)
        assert out.returncode == 0 and re.search(r"\d+ tests? collected", out.stdout), out.stdout[-2000:]
    elif words[:2] == ["python", "app.py"]:
        out = _run([*_python(words), "--help"], timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        _assert_options_in_help(words[2:], out.stdout, command)
    else:
        pytest.fail(f"no check for the first-screen command `{command}`: add one to tests/test_readme.py")


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in FIRST_SCREEN if split_env(c)[1][:2] == ["python", "app.py"]],
                         ids=_id)
def test_first_screen_demo_serves_the_page(command):
    env, words = split_env(command)
    argv = _python(words)
    if "--port" not in argv:
        port = _free_port()
        argv += ["--port", str(port)]
    else:
        port = int(argv[argv.index("--port") + 1])
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **env}
    proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 150
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200 and b"MATS" in r.read()
                    return
            except OSError:
                time.sleep(1)
        pytest.fail(f"`{command}` did not serve http://127.0.0.1:{port}/ within 150 s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- every `mats` command ------------------------------------------------------------------------------------------

def test_mats_command_is_installed():
    exe = shutil.which("mats")
    assert exe, "the README's `mats` command is not on PATH (pip install -r requirements.txt installs it)"
    out = _run([exe, "--help"], timeout=120)
    assert out.returncode == 0 and "caption" in out.stdout


def _on_tiny(words: list[str], tiny: Path, tmp_path: Path) -> list[str]:
    """The README's arguments with the shipped checkpoints replaced by the tiny one and outputs sent to tmp_path."""
    out = []
    for i, w in enumerate(words):
        if w.rstrip("/") in SHIPPED:
            w = str(tiny)
        elif w.startswith("/tmp/"):
            w = str(tmp_path / w[len("/tmp/"):])
        elif i and words[i - 1] in ("-o", "--out", "--output"):
            w = str(tmp_path / Path(w).name)
        out.append(w)
    return out


@pytest.mark.parametrize("command", MATS, ids=_id)
def test_mats_command(command, tiny_ckpt_yamnet, tmp_path, monkeypatch, capsys):
    # The tiny checkpoint listens through a tiny YAMNet encoder, as the shipped ones do (so `mats tags` runs too).
    commands = _subparsers(_mats_parser())
    for part in parts(command):
        _mats_part(part, commands, tiny_ckpt_yamnet, tmp_path, monkeypatch, capsys)


def _mats_part(command, commands, tiny, tmp_path, monkeypatch, capsys):
    from mats.cli import main

    env, words = split_env(command)
    args = words[1:]
    if args[0] not in commands:
        pytest.skip(f"`mats {args[0]}` is not in `mats --help` yet")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if args[0] in RUN_ON_TINY:
        monkeypatch.setenv("MATS_MODEL", str(tiny))  # where the README leaves the model out
        monkeypatch.chdir(ROOT)
        rc = main(_on_tiny(args, tiny, tmp_path))
        assert rc == 0, f"`{command}`: " + capsys.readouterr().err
        return
    # Needs data, the network or a GPU: its help, and every option the README passes must be in that help.
    sub, path = commands[args[0]], [args[0]]
    rest = args[1:]
    while rest and rest[0] in _subparsers(sub):
        sub, path, rest = _subparsers(sub)[rest[0]], path + [rest[0]], rest[1:]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    _assert_options_in_help(rest, capsys.readouterr().out, command)


# -- what is not run -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [c for c in OTHER if split_env(c)[1][0] == "apt-get"], ids=_id)
def test_apt_packages_are_the_ones_ci_installs(command):
    packages = [w for w in split_env(command)[1][2:] if not w.startswith("-")]
    ci = re.search(r'APT_PACKAGES="([^"]*)"', (ROOT / ".ci" / "run").read_text()).group(1).split()
    assert set(packages) <= set(ci), f"README asks for {packages}; .ci/run installs {ci}"


@pytest.mark.parametrize("command", [c for c in OTHER if split_env(c)[1][0] == "hf"], ids=_id)
def test_hf_commands_accept_the_readme_options(command):
    exe = shutil.which("hf")
    if exe is None:
        pytest.skip("the `hf` command (huggingface_hub) is not on PATH")
    words = split_env(command)[1]
    path = [w for w in words[1:3] if re.fullmatch(r"[a-z-]+", w)]
    out = _run([exe, *path, "--help"], timeout=60)
    assert out.returncode == 0, out.stderr
    _assert_options_in_help(words[1:], out.stdout, command)


# -- the Python block ----------------------------------------------------------------------------------------------

def test_python_block_runs_on_the_tiny_model(tiny_ckpt_yamnet, tmp_path, monkeypatch):
    """The README's first Python block (the library), with the tiny checkpoint and a synthetic clip."""
    import numpy as np
    import soundfile as sf

    blocks = re.findall(r"```python\n(.*?)```", _body(TEXT), re.S)
    code = next(b for b in blocks if "MATS.from_pretrained" in b)
    clip = tmp_path / "clip.wav"
    t = np.arange(16000) / 16000
    sf.write(clip, 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    for name in SHIPPED:
        code = code.replace(f'"{name}"', repr(str(tiny_ckpt_yamnet)))
    code = code.replace('"clip.wav"', repr(str(clip)))
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})
