"""Batched augmentation agrees with torchvision v2 where both are deterministic."""

import pytest
import torch
from torchvision.transforms import v2

from skcdc.augmentation import RandomSubpixelAffine, batched
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
        v2.RandomAffine(degrees=(30, 30)),
        v2.RandomAffine(degrees=(12, 12), scale=(1.25, 1.25)),
        v2.RandomAffine(degrees=(-17, -17), interpolation=v2.InterpolationMode.BILINEAR),
        v2.ColorJitter(brightness=(1.5, 1.5)),
        v2.ColorJitter(contrast=(0.5, 0.5)),
        v2.ColorJitter(saturation=(0.3, 0.3)),
        v2.RandomGrayscale(p=1.0),
        v2.GaussianBlur(5, sigma=(1.0, 1.0)),
        v2.RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0)),
    ],
    ids=[
        "flip",
        "rotate90",
        "rotate30-nearest",
        "rotate12-zoom",
        "rotate17-bilinear",
        "brightness",
        "contrast",
        "saturation",
        "grey",
        "blur",
        "full-crop",
    ],
)
def test_deterministic_steps_match_v2(images, step):
    plan = batched(v2.Compose([step]), (16, 16))
    assert plan is not None
    expected = torch.stack([step(image) for image in images])
    torch.testing.assert_close(plan(images), expected, atol=2e-3, rtol=0)


def test_crops_are_whole_pixel_boxes_resized_like_v2(images):
    # A 50% crop of a 16 px image is a 11 x 11 box at one of 6 x 6 positions.
    step = v2.RandomResizedCrop(16, scale=(0.5, 0.5), ratio=(1.0, 1.0), antialias=True)
    out = batched(v2.Compose([step]), (16, 16))(images)
    for augmented, image in zip(out, images):
        # Away from the box's edge (where v2 repeats the box's border and the
        # batched warp blends in the pixel beyond it) the output is one of v2's.
        errors = [
            (augmented - v2.functional.resized_crop(image, top, left, 11, 11, [16, 16]))[
                :, 1:-1, 1:-1
            ]
            .abs()
            .max()
            for top in range(6)
            for left in range(6)
        ]
        assert min(errors) < 1e-4


def test_jitter_order_is_random_per_image(images):
    brightness, contrast = 1.5, 0.5
    step = v2.ColorJitter(brightness=(brightness, brightness), contrast=(contrast, contrast))
    torch.manual_seed(0)
    out = batched(v2.Compose([step]), (16, 16))(images.repeat(8, 1, 1, 1))
    first_brightness = v2.functional.adjust_contrast(
        v2.functional.adjust_brightness(images, brightness), contrast
    ).repeat(8, 1, 1, 1)
    first_contrast = v2.functional.adjust_brightness(
        v2.functional.adjust_contrast(images, contrast), brightness
    ).repeat(8, 1, 1, 1)
    as_first = [(out[i] - first_brightness[i]).abs().max() < 1e-3 for i in range(len(out))]
    as_second = [(out[i] - first_contrast[i]).abs().max() < 1e-3 for i in range(len(out))]
    assert all(a or b for a, b in zip(as_first, as_second))
    assert any(as_first) and any(as_second)


def test_random_apply_with_p_zero_is_the_identity(images):
    plan = batched(
        v2.Compose([v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.0)]), (16, 16)
    )
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
    box = v2.InterpolationMode.BOX  # grid_sample has no box filter
    assert batched(v2.Compose([v2.RandomAffine(degrees=5, interpolation=box)]), (16, 16)) is None


def test_subpixel_affine_turns_like_v2_and_moves_by_fractions_of_a_pixel(images):
    turn = RandomSubpixelAffine(degrees=(12, 12), scale=(1.25, 1.25))
    bilinear = v2.RandomAffine(
        degrees=(12, 12), scale=(1.25, 1.25), interpolation=v2.InterpolationMode.BILINEAR
    )
    # Inside the image (v2 also fades its border with the fill mask) they agree.
    torch.testing.assert_close(
        turn(images[0])[:, 2:-2, 2:-2], bilinear(images[0])[:, 2:-2, 2:-2], atol=1e-4, rtol=0
    )
    torch.manual_seed(0)
    moved = RandomSubpixelAffine(degrees=0, translate=(0.2, 0.2))(images[0])
    whole_pixel_shifts = [
        v2.functional.affine(images[0], angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0, 0.0])
        for dx in range(-3, 4)
        for dy in range(-3, 4)
    ]
    assert all((moved - shifted).abs().max() > 1e-3 for shifted in whole_pixel_shifts)
    # The same transform, batched, still runs batched.
    assert batched(v2.Compose([turn, v2.RandomHorizontalFlip()]), (16, 16)) is not None
