"""The browser test skips on a machine without chromium, unless MATS_REQUIRE_BROWSER=1 (CI) says it must run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("required, outcome", [("", "2 skipped"), ("1", "2 errors")])
def test_missing_browser_skips_unless_required(required, outcome, tmp_path):
    env = {**os.environ, "MATS_CHROMIUM": str(tmp_path / "no-chromium"), "MATS_REQUIRE_BROWSER": required}
    run = subprocess.run([sys.executable, "-m", "pytest", "tests/test_browser.py", "-rsf", "-q", "-p", "no:cacheprovider"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert outcome in out, out[-3000:]
    assert "no-chromium is missing: browser tests need it (apt-get install -y chromium" in out, out[-3000:]
