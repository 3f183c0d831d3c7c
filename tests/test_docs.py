"""The Sphinx documentation builds, warnings treated as errors."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    index = (tmp_path / "html" / "index.html").read_text()
    assert "CDCClustering" in (tmp_path / "html" / "api.html").read_text()
    assert "Getting started" in index
