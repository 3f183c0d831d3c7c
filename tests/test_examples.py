"""Every script in examples/ runs top to bottom with its quick settings."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name, *args, cwd=None):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True, text=True, timeout=600, cwd=cwd, check=False,
    )
    # The script's own message (a missing data source names its install) is the failure.
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_every_example_has_a_test():
    tested = {"quickstart_digits.py", "pipeline_grid_search.py", "text_embeddings_bbc.py",
              "images_fashion_mnist.py", "plots.py", "distributed_fit.py",
              "pretrained_backbone.py"}
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == tested


def test_quickstart():
    out = run_example("quickstart_digits.py")
    assert "CDC" in out and "k-means" in out and "ACC" in out


def test_pipeline_grid_search_with_and_without_labels():
    out = run_example("pipeline_grid_search.py", "--quick")
    assert "with labels:  best {'cdcclustering__tau_c'" in out
    assert "label-free:   best" in out and "ACC" in out


def test_text_embeddings():
    out = run_example("text_embeddings_bbc.py", "--quick")
    assert "(400, 384)" in out and "CDC" in out and "k-means" in out


def test_images_end_to_end():
    out = run_example("images_fashion_mnist.py", "--quick")
    assert "CDC (images)" in out and "(1000, 28, 28) uint8" in out
    assert "cluster centres: (10, 1, 28, 28)" in out


def test_pretrained_backbone_and_scratch():
    out = run_example("pretrained_backbone.py", "--quick")
    assert "EfficientNet-Lite0, ImageNet weights: ACC" in out
    assert "small CNN from scratch: ACC" in out


def test_plots(tmp_path):
    out = run_example("plots.py", "--quick", "--out", str(tmp_path))
    names = ["cluster_examples.png", "confusion.png", "embedding.png", "history.png"]
    assert str(names) in out
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_distributed_fit_under_torchrun(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(ROOT / "examples" / "distributed_fit.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
        # A rank that aborts in C++ prints where.
        env={**os.environ, "OMP_NUM_THREADS": "1", "TORCH_SHOW_CPP_STACKTRACES": "1"},
    )
    # The workers' own output before the launcher's report of the failure,
    # which alone would fill the message.
    assert result.returncode == 0, (
        f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[:4000]}"
        f"\n...\n{result.stderr[-2000:]}"
    )
    reports = sorted(line for line in result.stdout.splitlines() if line.startswith("rank"))
    assert [line.split(":")[0] for line in reports] == ["rank 0 of 2", "rank 1 of 2"]
    # The same labels on both ranks, so the same report; one file written.
    assert reports[0].split(":")[1] == reports[1].split(":")[1]
    assert result.stdout.count("saved the model") == 1
    assert (tmp_path / "model.skcdc").is_file()
