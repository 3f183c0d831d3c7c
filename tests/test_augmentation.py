"""Batched augmentation agrees with torchvision v2 where both are deterministic."""

import pytest
import torch
from torchvision.transforms import v2

from skcdc.augmentation import batched
from skcdc.views import default_augmentation


@pytest.fixture
def images():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 16, 16, generator=generator)


@pytest.mark.parametrize(
    "step",
    [
        v2.RandomHorizontalFlip(p=1.0),
        v2.RandomAffine(degrees=(90, 90)),
        v2.ColorJitter(brightness=(1.5, 1.5)),
        v2.ColorJitter(contrast=(0.5, 0.5)),
        v2.ColorJitter(saturation=(0.3, 0.3)),
        v2.RandomGrayscale(p=1.0),
        v2.GaussianBlur(5, sigma=(1.0, 1.0)),
        v2.RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0)),
    ],
    ids=["flip", "rotate90", "brightness", "contrast", "saturation", "grey", "blur", "full-crop"],
)
def test_deterministic_steps_match_v2(images, step):
    plan = batched(v2.Compose([step]), (16, 16))
    assert plan is not None
    expected = torch.stack([step(image) for image in images])
    torch.testing.assert_close(plan(images), expected, atol=2e-3, rtol=0)


def test_random_apply_with_p_zero_is_the_identity(images):
    plan = batched(v2.Compose([v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.0)]), (16, 16))
    torch.testing.assert_close(plan(images), images)


@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32), (3, 96)])
def test_default_recipes_run_batched_with_per_image_parameters(channels, size):
    recipe = default_augmentation(channels, size, size)
    plan = batched(recipe, (size, size))
    assert plan is not None
    same = torch.rand(1, channels, size, size).repeat(8, 1, 1, 1)
    torch.manual_seed(0)
    out = plan(same)
    assert out.shape == same.shape and out.min() >= 0 and out.max() <= 1
    # Identical inputs, different random parameters per image.
    assert not torch.allclose(out[0], out[1])
    torch.manual_seed(0)
    torch.testing.assert_close(plan(same), out)  # seeded: reproducible


def test_unsupported_steps_and_resizing_crops_fall_back():
    assert batched(v2.Compose([v2.RandomErasing()]), (16, 16)) is None
    assert batched(v2.Compose([v2.RandomResizedCrop(8)]), (16, 16)) is None
    assert batched(v2.Compose([v2.RandomAffine(degrees=5, shear=10)]), (16, 16)) is None
