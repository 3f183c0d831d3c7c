"""skcdc's file format: versioned, written atomically, never runs code when read."""

import os

import pytest
import torch

from skcdc import CDCClustering, __version__, files
from skcdc.exceptions import IncompatibleFileError

FAST = {"epochs": 10, "batch_size": 64, "n_init": 1, "self_labelling_epochs": 0, "random_state": 0}


def test_checkpoint_file_is_safe_to_load_and_versioned(blobs, tmp_path):
    X, _ = blobs
    CDCClustering(3, checkpoint_dir=tmp_path, **FAST).fit(X)
    path = tmp_path / "run-0.pt"
    raw = torch.load(path, weights_only=True)  # no code can run while loading
    assert raw["skcdc_version"] == __version__
    assert raw["format_version"] == files.FORMAT_VERSION
    assert raw["state"]["epoch"] == FAST["epochs"]
    assert not list(tmp_path.glob("*.tmp"))

    raw["format_version"] = files.FORMAT_VERSION + 1
    raw["skcdc_version"] = "99.0"
    torch.save(raw, path)
    with pytest.raises(IncompatibleFileError, match="skcdc 99.0.*Install skcdc==99.0"):
        CDCClustering(3, checkpoint_dir=tmp_path, **FAST).fit(X)


def test_a_file_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "run-0.pt"

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"kind": "checkpoint", "evil": Payload()}, path)
    with pytest.raises(IncompatibleFileError, match="not a readable skcdc checkpoint"):
        files.load(path, kind="checkpoint")
