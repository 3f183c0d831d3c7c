"""Image mode: every input kind, layouts, backbones, augmentations (tiny images, CPU)."""

from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import adjusted_rand_score
from torch import nn
from torch.utils.data import Dataset

from skcdc import CDCClustering, files
from skcdc.images import StreamedImages, load_images
from skcdc.networks import BackboneFeatures, SelectHead
from skcdc.persistence import load_model, save_model
from skcdc.views import default_augmentation

TINY = {"epochs": 2, "batch_size": 16, "n_init": 1, "random_state": 0}


@pytest.fixture(scope="module")
def shapes():
    """48 grey 12x12 images of three kinds: a bright square, a bar, a ring; labels."""
    rng = np.random.default_rng(0)
    images = np.zeros((48, 12, 12), dtype=np.uint8)
    labels = np.arange(48) % 3
    for i, label in enumerate(labels):
        dx, dy = rng.integers(-1, 2, size=2)
        if label == 0:
            images[i, 3 + dy : 9 + dy, 3 + dx : 9 + dx] = 255
        elif label == 1:
            images[i, :, 5 + dx : 7 + dx] = 255
        else:
            images[i, 2:10, 2:10] = 255
            images[i, 4:8, 4:8] = 0
    images = np.clip(images.astype(int) + rng.integers(0, 30, images.shape), 0, 255)
    return images.astype(np.uint8), labels


@pytest.fixture(scope="module")
def fitted_images(shapes):
    images, _ = shapes
    return CDCClustering(3, **TINY).fit(images)


def test_grey_arrays_fit_and_predict(shapes, fitted_images):
    images, _ = shapes
    model = fitted_images
    assert model.image_shape_ == (1, 12, 12)
    assert not hasattr(model, "n_features_in_")
    assert model.labels_.shape == (48,)
    np.testing.assert_array_equal(model.predict(images), model.labels_)
    proba = model.predict_proba(images[:5])
    assert proba.shape == (5, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert model.transform(images[:5]).shape == (5, 3 + 128)
    assert model.cluster_centers_.shape == (3, 1, 12, 12)
    assert 0 <= model.score(images) <= np.log(3) + 1e-9


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x[:, None],  # (N, C, H, W)
        lambda x: x[..., None],  # (N, H, W, C)
        lambda x: np.repeat(x[..., None], 3, axis=3),  # RGB, channels last
        lambda x: x.astype(np.float32) / 255,  # float in [0, 1]
        lambda x: torch.from_numpy(x),  # torch tensor
    ],
    ids=["NCHW", "NHWC", "RGB-NHWC", "float", "torch"],
)
def test_every_array_layout_is_read(shapes, convert):
    images, _ = shapes
    converted = convert(images)
    tensor = load_images(converted)
    assert tensor.ndim == 4 and tensor.shape[0] == 48 and tensor.shape[2:] == (12, 12)
    model = CDCClustering(3, **{**TINY, "epochs": 1}).fit(converted)
    assert model.predict(converted).shape == (48,)


def test_layouts_agree(shapes):
    images, _ = shapes
    first = load_images(images[:, None])
    last = load_images(images[..., None])
    torch.testing.assert_close(first, last)
    rgb = np.repeat(images[..., None], 3, axis=3)
    torch.testing.assert_close(
        load_images(rgb), load_images(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)))
    )


def test_ambiguous_layout_asks_for_image_layout():
    images = np.zeros((10, 3, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="image_layout='channels_first'"):
        CDCClustering(2, **TINY).fit(images)
    model = CDCClustering(2, image_layout="channels_last", **{**TINY, "epochs": 1})
    assert model.fit(images).image_shape_ == (3, 3, 8)


def test_float_images_outside_unit_range_are_refused(shapes):
    images, _ = shapes
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        CDCClustering(3, **TINY).fit(images.astype(np.float64))


class ShapesDataset(Dataset):
    def __init__(self, images, labels=None, pil=False, sizes=None):
        self.images, self.labels, self.pil, self.sizes = images, labels, pil, sizes

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        if self.sizes is not None and i == len(self.images) - 1:
            image = np.zeros(self.sizes, dtype=np.uint8)
        image = Image.fromarray(image) if self.pil else torch.from_numpy(image)[None]
        return image if self.labels is None else (image, int(self.labels[i]))


@pytest.mark.parametrize("pil, with_labels", [(False, False), (True, True)])
def test_torch_dataset_of_images_or_pairs(shapes, fitted_images, pil, with_labels):
    images, labels = shapes
    dataset = ShapesDataset(images, labels if with_labels else None, pil=pil)
    streamed = load_images(dataset)
    torch.testing.assert_close(streamed[np.arange(len(images))], load_images(images))
    model = CDCClustering(3, **TINY).fit(dataset)
    # Same pixels, same seed: the same model as from the array.
    np.testing.assert_array_equal(model.labels_, fitted_images.labels_)
    np.testing.assert_array_equal(model.predict(dataset), fitted_images.predict(images))


def test_image_folder(shapes, fitted_images, tmp_path):
    images, labels = shapes
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / f"class{label}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    model = CDCClustering(3, **TINY).fit(str(tmp_path))
    assert model.image_shape_ == (1, 12, 12)  # grey PNGs stay grey
    assert model.predict(tmp_path).shape == (48,)
    # The files hold the array's pixels, in ImageFolder's order: the same
    # seed gives the same model as the array in that order.
    order = np.argsort([f"class{label}/{i:03d}" for i, label in enumerate(labels)])
    in_memory = CDCClustering(3, **TINY).fit(images[order])
    np.testing.assert_array_equal(model.labels_, in_memory.labels_)


class CountingDataset(ShapesDataset):
    """Records which items are read, and in which groups."""

    def __init__(self, images):
        super().__init__(images)
        self.reads = []

    def __getitem__(self, i):
        self.reads.append(i)
        return super().__getitem__(i)


def test_a_dataset_is_streamed_batch_by_batch(shapes):
    images, _ = shapes
    dataset = CountingDataset(images)
    streamed = load_images(dataset)
    # Opening it decodes every image once (checks and channel statistics)...
    assert isinstance(streamed, StreamedImages) and sorted(dataset.reads[1:]) == list(range(48))
    dataset.reads.clear()
    batches = [[5, 2, 7], [1, 0, 3]]
    loaded = list(streamed.load(batches))
    # ...and an epoch reads the items of each batch, in the sampler's order.
    assert dataset.reads == [5, 2, 7, 1, 0, 3]
    assert [index.tolist() for index, _ in loaded] == batches
    torch.testing.assert_close(loaded[1][1], load_images(images)[[1, 0, 3]])


@pytest.mark.parametrize(
    "streamed, large_data, expected",
    [(True, 100_000, np.memmap), (False, 10, np.memmap), (False, 100_000, np.ndarray)],
)
def test_refinement_features_of_streamed_or_many_images_come_from_a_scratch_file(
    shapes, monkeypatch, streamed, large_data, expected
):
    from skcdc.training import stages

    images, _ = shapes
    monkeypatch.setattr(stages, "LARGE_DATA", large_data)
    written = []
    original = stages._features

    def spy(*args):
        features = original(*args)
        written.append(type(features))
        return features

    monkeypatch.setattr(stages, "_features", spy)
    X = ShapesDataset(images) if streamed else images
    model = CDCClustering(3, **{**TINY, "refine_epochs": 1}).fit(X)
    assert written == [expected] and model.refined_
    assert (model.predict(images) == model.labels_).all()


def test_mixed_sizes_are_refused(shapes, tmp_path):
    images, _ = shapes
    with pytest.raises(ValueError, match="mixed sizes.*Resize"):
        CDCClustering(3, **TINY).fit(ShapesDataset(images, sizes=(10, 12)))
    (tmp_path / "a").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "a" / "0.png")
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "a" / "1.png")
    with pytest.raises(ValueError, match="mixed sizes"):
        CDCClustering(1, **TINY).fit(tmp_path)


def test_missing_or_empty_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        CDCClustering(2, **TINY).fit(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="ImageFolder layout"):
        CDCClustering(2, **TINY).fit(tmp_path)


def test_wrong_image_size_or_a_table_at_predict(fitted_images, shapes):
    images, _ = shapes
    with pytest.raises(ValueError, match=r"fitted on \(1, 12, 12\)"):
        fitted_images.predict(images[:, :10, :10])
    with pytest.raises(ValueError, match="pass images, not a 2-D table"):
        fitted_images.predict(images.reshape(48, -1))


def test_image_mode_learns_the_three_shapes(shapes):
    images, labels = shapes
    model = CDCClustering(3, epochs=15, batch_size=16, n_init=1, random_state=0).fit(images)
    assert adjusted_rand_score(labels, model.labels_) > 0.8


def test_image_mode_with_neighbour_positives_learns_the_shapes_reproducibly(shapes):
    images, labels = shapes
    params = {"epochs": 15, "batch_size": 16, "n_init": 1, "random_state": 0}
    model = CDCClustering(3, neighbour_share=0.5, n_neighbors=5, **params).fit(images)
    assert adjusted_rand_score(labels, model.labels_) > 0.8
    again = CDCClustering(3, neighbour_share=0.5, n_neighbors=5, **params).fit(images)
    np.testing.assert_array_equal(again.labels_, model.labels_)


def test_neighbour_positives_of_streamed_images_are_refused(shapes):
    images, _ = shapes
    with pytest.raises(ValueError, match="neighbour_share needs the images held in memory"):
        CDCClustering(3, neighbour_share=0.5, **TINY).fit(CountingDataset(images))


def test_same_seed_same_labels_in_image_mode(shapes, fitted_images):
    images, _ = shapes
    again = CDCClustering(3, **TINY).fit(images)
    np.testing.assert_array_equal(again.labels_, fitted_images.labels_)
    np.testing.assert_allclose(again.transform(images), fitted_images.transform(images), atol=1e-6)


def test_refinement_trains_new_heads_on_the_frozen_backbone(shapes, fitted_images, tmp_path):
    images, _ = shapes
    model = fitted_images
    assert model.refined_
    # The refinement stage self-labels for 50 optimiser steps here (3 an epoch).
    refinement = ["refine"] * 2 + ["refine-self-labelling"] * 17
    assert model.history_["phase"].tolist() == ["cdc", "cdc", *refinement]
    assert model.n_iter_ == 21 and model.history_["epoch"].tolist() == list(range(1, 22))
    assert isinstance(model.network_[1], BackboneFeatures)
    # The end-to-end stage is the same with the refinement off; the refinement
    # leaves its backbone as it was and replaces the heads.
    unrefined = CDCClustering(3, refine_epochs=0, **TINY).fit(images)
    assert not unrefined.refined_ and unrefined.history_["phase"].tolist() == ["cdc", "cdc"]
    assert model.refinement_run_scores_.shape == (1,)
    assert unrefined.refinement_run_scores_.shape == (0,)
    refined = model.network_[1].backbone.state_dict()
    for name, value in unrefined.network_[1].backbone.state_dict().items():
        torch.testing.assert_close(refined[name], value)
    assert model.instance_embedding_.shape == (48, 128)
    save_model(model, tmp_path / "refined.skcdc")
    loaded = load_model(tmp_path / "refined.skcdc")
    assert loaded.refined_
    np.testing.assert_array_equal(loaded.refinement_run_scores_, model.refinement_run_scores_)
    np.testing.assert_array_equal(loaded.predict(images), model.labels_)
    # A loaded model runs on the CPU; one fitted on a GPU rounds differently there.
    atol = 1e-6 if model.device_.type == "cpu" else 1e-3
    np.testing.assert_allclose(loaded.transform(images), model.transform(images), atol=atol)


def test_both_stages_checkpoint_and_resume(shapes, fitted_images, tmp_path):
    images, _ = shapes
    first = CDCClustering(3, checkpoint_dir=tmp_path, **TINY).fit(images)
    saved = files.load(tmp_path / "refine" / "run-0.pt", kind="checkpoint")
    # The CDC phase and the 17 self-labelling epochs of the refinement stage.
    assert saved["state"]["epoch"] == TINY["epochs"] + 17
    assert (tmp_path / "run-0.pt").exists()
    # A refit resumes both finished stages and ends where an uncheckpointed fit ends.
    again = CDCClustering(3, checkpoint_dir=tmp_path, **TINY).fit(images)
    for model in (first, again):
        np.testing.assert_array_equal(model.labels_, fitted_images.labels_)
        np.testing.assert_allclose(
            model.transform(images), fitted_images.transform(images), atol=1e-6
        )
    assert again.history_["epoch"].tolist() == list(range(1, 22))


def test_each_refinement_run_reports_its_score(shapes):
    images, _ = shapes
    model = CDCClustering(3, **{**TINY, "epochs": 1, "n_init": 2}).fit(images)
    assert model.run_scores_.shape == (2,) and model.refinement_run_scores_.shape == (2,)
    # Image mode keeps one run and its refinement, never a consensus.
    assert not model.consensus_ and isinstance(model.network_[-1], SelectHead)
    # Mutual information between a sample's cluster and its neighbours': 0 to log K nats.
    scores = model.refinement_run_scores_
    assert np.all((scores >= 0) & (scores <= np.log(3) + 1e-9))


class FlatNet(nn.Module):
    """A user's network for 12x12 images, with no backbone to refine; records
    the dtype of its hidden layer in every training pass."""

    seen: ClassVar[list] = []

    def __init__(self, in_channels, image_size, n_clusters, instance_dim=128):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 144, 16), nn.ReLU())
        self.logits = nn.Linear(16, n_clusters)
        self.z = nn.Linear(16, instance_dim)

    def forward(self, x):
        h = self.body(x)
        if self.training:
            self.seen.append(h.dtype)
        return self.logits(h), nn.functional.normalize(self.z(h), dim=1)


def test_a_user_network_is_not_refined(shapes):
    images, _ = shapes
    model = CDCClustering(3, network=FlatNet, **TINY).fit(images)
    assert not model.refined_ and set(model.history_["phase"]) == {"cdc"}


def test_image_mode_trains_in_float32_on_the_cpu(shapes, monkeypatch):
    """Even where the CPU has bfloat16, end to end and in the refinement stage:
    on digits' images bfloat16 lost accuracy (docs/method.md)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: True, raising=False)
    monkeypatch.setattr(FlatNet, "seen", [])
    images, _ = shapes
    model = CDCClustering(3, network=FlatNet, device="cpu", **TINY).fit(images)
    assert model.mixed_precision and set(FlatNet.seen) == {torch.float32}


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18"])
def test_named_backbones_train(shapes, backbone):
    images, _ = shapes
    params = {"backbone": backbone}
    model = CDCClustering(3, network_params=params, **{**TINY, "epochs": 1}).fit(images[:32])
    assert np.isfinite(model.transform(images[:4])).all()


class TinyBackbone(nn.Module):
    def __init__(self, width=6):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2))

    def forward(self, x):
        return self.body(x)


def test_user_backbone_class_weights_file_and_freezing(shapes, tmp_path):
    images, _ = shapes
    weights = TinyBackbone(width=5).state_dict()
    path = tmp_path / "backbone.pt"
    torch.save(weights, path)
    model = CDCClustering(
        3,
        network_params={
            "backbone": TinyBackbone,
            "backbone_kwargs": {"width": 5},
            "backbone_weights": str(path),
            "freeze_backbone": True,
        },
        **TINY,
    ).fit(images)
    backbone = model.network_[1].backbone
    for name, value in backbone.state_dict().items():
        torch.testing.assert_close(value.cpu(), weights[name])  # frozen: untouched
    # The refinement stage clusters the frozen backbone's 5 x 2 x 2 features.
    assert model.refined_ and model.network_[2].mean.shape == (5 * 2 * 2,)


def test_fine_tuned_backbone_moves_from_the_given_weights(shapes):
    images, _ = shapes
    weights = TinyBackbone().state_dict()
    params = {"backbone": TinyBackbone, "backbone_weights": weights}
    model = CDCClustering(3, network_params=params, **TINY).fit(images)
    trained = model.network_[1].backbone.state_dict()
    assert not torch.allclose(trained["body.0.weight"].cpu(), weights["body.0.weight"])


def test_custom_augmentation_is_used(shapes):
    images, _ = shapes
    calls = []

    def flip(image):
        calls.append(image.shape)
        return image.flip(-1)

    CDCClustering(3, augmentation=flip, **{**TINY, "epochs": 1}).fit(images)
    assert calls and calls[0] == (1, 12, 12)


@pytest.mark.parametrize("size, channels", [(8, 1), (28, 1), (32, 3), (96, 3), (64, 1)])
def test_default_augmentations_keep_size_and_range(size, channels):
    augment = default_augmentation(channels, size, size)
    image = torch.rand(channels, size, size)
    out = augment(image)
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1
    names = [type(t).__name__ for t in augment.transforms]
    assert ("RandomHorizontalFlip" in names) == (size >= 32)


def test_mode_features_refuses_images_and_mode_images_refuses_tables(shapes):
    images, _ = shapes
    with pytest.raises(ValueError, match="dim 3"):
        CDCClustering(3, mode="features", **TINY).fit(images)
    with pytest.raises(ValueError, match="got 2 dimensions"):
        CDCClustering(3, mode="images", **TINY).fit(images.reshape(48, -1))
