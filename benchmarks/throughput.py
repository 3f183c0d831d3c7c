"""Training throughput of image mode per backbone, on this machine.

    python benchmarks/throughput.py                    # writes docs/throughput.md

Each row fits ``CDCClustering`` for two epochs on N random uint8 images (the
content does not change the cost) and reports the second epoch: images per
second, each image giving two augmented views, augmentation and the backward
pass included.
"""

from __future__ import annotations

import argparse
import platform
import warnings
from pathlib import Path

import numpy as np
import torch

from skcdc import CDCClustering

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    "# Image-mode training throughput\n\n"
    "Training images/s of `CDCClustering` per backbone: batch 128, default augmentation,\n"
    "second of two epochs, each image giving two views. One section per device; a run\n"
    "replaces its own device's section.\n"
)

CASES = [  # backbone, (H, W, C), images
    ("small_cnn", (28, 28, 1), 2048),
    ("small_cnn", (32, 32, 3), 2048),
    ("resnet18", (32, 32, 3), 512),
    ("resnet34", (32, 32, 3), 256),
    ("resnet50", (32, 32, 3), 256),
    ("resnet18", (96, 96, 3), 256),
]


def measure(backbone: str, shape: tuple[int, int, int], n_images: int, device: str) -> float:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, *shape), dtype=np.uint8)
    if shape[2] == 1:
        images = images[..., 0]
    model = CDCClustering(
        10, network_params={"backbone": backbone}, epochs=2, batch_size=128, device=device, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random images: collapse warnings are expected
        model.fit(images)
    return steady_rate(model, n_images)[1]


def steady_rate(model: CDCClustering, n_images: int) -> tuple[float, float]:
    """Seconds per epoch and training images/s of a fitted model's end-to-end
    stage, over the epochs after the first (which also pays for start-up); the
    refinement stage trains on features, not images, and is left out."""
    history = model.history_
    times = history.loc[history["phase"] == "cdc", "time"].tolist()
    steady = times[1:] or times
    epoch_seconds = sum(steady) / len(steady)
    # The engine drops the last partial batch of an epoch.
    trained = n_images // model.batch_size * model.batch_size
    return epoch_seconds, trained / epoch_seconds


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "throughput.md")
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="multiply each row's image count (a GPU needs more steps to time)",
    )
    args = parser.parse_args(argv)
    lines = [
        "| backbone | images | training images/s |",
        "|---|---|---|",
    ]
    for backbone, shape, n_images in CASES:
        rate = measure(backbone, shape, n_images * args.scale, args.device)
        line = f"| {backbone} | {shape[0]}x{shape[1]}x{shape[2]} | {rate:.0f} |"
        print(line, flush=True)
        lines.append(line)
    section = (
        f"## {args.device}\n\n"
        f"`python benchmarks/throughput.py --device {args.device} --scale {args.scale}` on "
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}, device {_device_name(args.device)}.\n\n" + "\n".join(lines) + "\n"
    )
    text = args.out.read_text() if args.out.exists() else HEADER
    args.out.write_text(replace_section(text, f"## {args.device}\n", section))


def replace_section(text: str, heading: str, section: str) -> str:
    """``text`` with the section under ``heading`` (up to the next ``## ``) replaced
    by ``section``, or with ``section`` appended when there is none, so a run on
    one device keeps the other devices' tables."""
    start = text.find(heading)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    end = text.find("\n## ", start + len(heading))
    rest = text[end + 1 :] if end >= 0 else ""
    return text[:start] + section + ("\n" + rest if rest else "")


if __name__ == "__main__":
    main()
