"""Batched execution of torchvision v2 augmentation recipes.

torchvision's v2 transforms draw one set of random parameters per call, so a
batch tensor gets the same crop and the same jitter for every image; applying
them image by image gives each its own parameters but costs a Python loop per
batch, which on a GPU (and even on the CPU, for small images) takes longer
than the network. :class:`BatchedAugmentation` reads the parameters of a v2
recipe and applies it to the whole batch at once with per-image random
parameters: every geometric step becomes one affine matrix per image and one
``grid_sample`` call, every photometric step a few vectorised tensor
operations. The v2 objects stay the single description of the recipe.

Supported steps: ``RandomResizedCrop``, ``RandomHorizontalFlip``,
``RandomAffine`` (rotation and translation), ``ColorJitter``,
``RandomGrayscale``, ``GaussianBlur`` and ``RandomApply`` around any of them.
:func:`batched` returns None for a recipe with anything else, and the caller
falls back to applying the recipe image by image.

Differences from v2, by design: a crop whose sampled box does not fit is
clamped to the image instead of redrawn (v2 retries ten times, then takes a
centre crop); the four colour-jitter factors are applied in a fixed order
(brightness, contrast, saturation, hue) rather than a random one; hue is
rotated in YIQ space.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

__all__ = ["BatchedAugmentation", "batched"]

_GEOMETRIC = (v2.RandomResizedCrop, v2.RandomHorizontalFlip, v2.RandomAffine)
_PHOTOMETRIC = (v2.ColorJitter, v2.RandomGrayscale, v2.GaussianBlur)


def batched(recipe: Callable, image_size: tuple[int, int]) -> BatchedAugmentation | None:
    """A batched version of a v2 ``Compose`` (or single transform) for images of
    ``image_size`` (height, width), or None when some step is not supported."""
    steps = list(recipe.transforms) if isinstance(recipe, v2.Compose) else [recipe]
    plan = []
    for step in steps:
        p = 1.0
        if isinstance(step, v2.RandomApply):
            if len(step.transforms) != 1:
                return None
            p, step = step.p, step.transforms[0]
        if not isinstance(step, _GEOMETRIC + _PHOTOMETRIC):
            return None
        if isinstance(step, v2.RandomAffine) and (step.scale is not None or step.shear is not None):
            return None
        if isinstance(step, v2.RandomResizedCrop) and tuple(step.size) != tuple(image_size):
            return None  # a crop that also resizes changes the image size
        plan.append((step, p))
    return BatchedAugmentation(plan)


class BatchedAugmentation:
    """Applies a plan of (v2 step, probability) pairs to a (B, C, H, W) batch.

    Random parameters are drawn per image from torch's global generator on the
    CPU (so results do not depend on the device), then moved to the batch's
    device.
    """

    def __init__(self, plan: list[tuple[object, float]]) -> None:
        self.plan = plan

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Augment float images (B, C, H, W) in [0, 1]; returns a new tensor."""
        n, _, height, width = batch.shape
        # Output-to-input affine maps in normalised coordinates, composed step by step.
        theta = torch.eye(3).repeat(n, 1, 1)
        geometric = False
        out = batch
        for step, p in self.plan:
            apply = torch.rand(n) < p
            if isinstance(step, _GEOMETRIC):
                theta = theta @ _affine(step, apply, n, height, width)
                geometric = True
                continue
            if geometric:  # photometric steps act on the warped image
                out = _warp(out, theta)
                theta, geometric = torch.eye(3).repeat(n, 1, 1), False
            out = _photometric(step, out, apply.to(out.device))
        if geometric:
            out = _warp(out, theta)
        return out


def _warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(
        theta[:, :2].to(images.device, images.dtype), list(images.shape), align_corners=False
    )
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _uniform(low: float, high: float, n: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(n)


def _affine(step: object, apply: torch.Tensor, n: int, height: int, width: int) -> torch.Tensor:
    """Per-image 3x3 matrices mapping output coordinates to input coordinates."""
    matrix = torch.eye(3).repeat(n, 1, 1)
    if isinstance(step, v2.RandomResizedCrop):
        area = _uniform(*step.scale, n)
        log_ratio = _uniform(math.log(step.ratio[0]), math.log(step.ratio[1]), n)
        ratio = log_ratio.exp()
        # Box size as a fraction of the image side, clamped to fit.
        w = (area * ratio).sqrt().clamp(max=1.0)
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (torch.rand(n) * 2 - 1) * (1 - w)
        cy = (torch.rand(n) * 2 - 1) * (1 - h)
        matrix[:, 0, 0], matrix[:, 1, 1] = w, h
        matrix[:, 0, 2], matrix[:, 1, 2] = cx, cy
    elif isinstance(step, v2.RandomHorizontalFlip):
        matrix[:, 0, 0] = 1.0 - 2.0 * (torch.rand(n) < step.p).float()
    else:  # RandomAffine: rotation and translation
        angle = torch.deg2rad(_uniform(*step.degrees, n))
        cos, sin = angle.cos(), angle.sin()
        # v2 turns the image counter-clockwise by the angle: an output pixel
        # samples the input turned back (y points down), in pixel units
        # expressed in normalised coordinates.
        aspect = width / height
        matrix[:, 0, 0], matrix[:, 0, 1] = cos, sin / aspect
        matrix[:, 1, 0], matrix[:, 1, 1] = -sin * aspect, cos
        if step.translate is not None:
            matrix[:, 0, 2] = _uniform(-step.translate[0], step.translate[0], n) * 2
            matrix[:, 1, 2] = _uniform(-step.translate[1], step.translate[1], n) * 2
    identity = torch.eye(3).repeat(n, 1, 1)
    return torch.where(apply[:, None, None], matrix, identity)


def _grey(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _factor(bounds: tuple[float, float] | None, apply: torch.Tensor, like: torch.Tensor):
    """Per-image factors (B, 1, 1, 1); 1 (no change) where not applied."""
    if bounds is None:
        return None
    factor = _uniform(*bounds, apply.shape[0]).to(like.device, like.dtype)
    return torch.where(apply, factor, torch.ones_like(factor)).view(-1, 1, 1, 1)


def _photometric(step: object, images: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    if isinstance(step, v2.RandomGrayscale):
        grey = (torch.rand(images.shape[0], device=images.device) < step.p) & apply
        return torch.where(grey.view(-1, 1, 1, 1), _grey(images).expand_as(images), images)
    if isinstance(step, v2.GaussianBlur):
        return _blur(images, step, apply)
    out = images
    brightness = _factor(step.brightness, apply, out)
    if brightness is not None:
        out = (out * brightness).clamp(0, 1)
    contrast = _factor(step.contrast, apply, out)
    if contrast is not None:
        mean = _grey(out).mean(dim=(1, 2, 3), keepdim=True)
        out = (mean + contrast * (out - mean)).clamp(0, 1)
    if out.shape[1] == 3:
        saturation = _factor(step.saturation, apply, out)
        if saturation is not None:
            grey = _grey(out)
            out = (grey + saturation * (out - grey)).clamp(0, 1)
        if step.hue is not None:
            shift = _uniform(*step.hue, out.shape[0]).to(out.device, out.dtype)
            out = _rotate_hue(out, shift, apply)
    return out


def _rotate_hue(images: torch.Tensor, shift: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns in YIQ space (per image)."""
    shift = torch.where(apply, shift, torch.zeros_like(shift))
    to_yiq = images.new_tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
    )
    angle = shift * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.zeros(images.shape[0], 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    transform = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (B, 3, 3)
    out = torch.einsum("bij,bjhw->bihw", transform, images)
    return out.clamp(0, 1)


def _blur(images: torch.Tensor, step: v2.GaussianBlur, apply: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma, as one grouped convolution."""
    n, channels, height, width = images.shape
    size = step.kernel_size[0]
    sigma = _uniform(*step.sigma, n).to(images.device, images.dtype)
    offsets = torch.arange(size, device=images.device, dtype=images.dtype) - size // 2
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    identity = (offsets == 0).to(images.dtype).expand(n, size)
    kernel = torch.where(apply[:, None], kernel, identity)
    kernel = kernel.repeat_interleave(channels, 0)  # (B*C, size)
    flat = images.reshape(1, n * channels, height, width)
    pad = size // 2
    # Reflect like v2 where the image is wide enough, else repeat the border.
    mode = "reflect" if pad < min(height, width) else "replicate"
    groups = n * channels
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode=mode), kernel[:, None, None, :], groups=groups)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode=mode), kernel[:, None, :, None], groups=groups)
    return flat.reshape(n, channels, height, width).clamp(0, 1)
