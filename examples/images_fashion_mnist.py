"""Image mode: cluster Fashion-MNIST images end to end, encoder included.

    python examples/images_fashion_mnist.py           # 10000 test images, the default budget
    python examples/images_fashion_mnist.py --quick   # 1000 images, 3 epochs (< 1 min)

The images come from the Debian package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``). CDCClustering sees a (N, 28, 28)
uint8 array, so it picks image mode: an augmentation of each image and one of
another augmentation of the image or, half of the time, of one of its nearest
neighbours in pixel space (``neighbour_share="auto"`` at 28 px) are the
positive pair, and a small CNN is trained from scratch with the two heads; then
the refinement stage clusters the trained CNN's features of the images with
nearest neighbours as positives (``refine_epochs``).
"""

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from skcdc import CDCClustering
from skcdc.metrics import clustering_report

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="1000 images, 3 epochs")
args = parser.parse_args()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (Fashion-MNIST's format) as a uint8 array."""
    data = gzip.decompress(path.read_bytes())
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3]))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * data[3]).reshape(shape)


root = Path("/usr/share/datasets/fashion-mnist")
images = read_idx(root / "t10k-images-idx3-ubyte.gz")
labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
n_images, epochs = (1000, 3) if args.quick else (len(images), "auto")
images, labels = images[:n_images], labels[:n_images]

start = time.perf_counter()
model = CDCClustering(n_clusters=10, epochs=epochs, random_state=0, verbose=1).fit(images)
print(f"image mode on {images.shape} {images.dtype}: {time.perf_counter() - start:.0f} s")
print("CDC (images)     ", clustering_report(labels, model.labels_))
stages = model.history_.groupby("phase", sort=False)["time"].sum().round(1)
print("training seconds per stage:", stages.to_dict())
pixels = images.reshape(len(images), -1) / 255.0
kmeans = KMeans(10, n_init=10, random_state=0).fit_predict(pixels)
print("k-means (pixels) ", clustering_report(labels, kmeans))

# New images go through the same network; the mean image of each cluster:
print("predicted:", model.predict(images[:10]), "truth:", labels[:10])
print("cluster centres:", model.cluster_centers_.shape)  # (10, 1, 28, 28)
