"""The plots of skcdc.plotting, written as PNG files.

    python examples/plots.py --out skcdc-plots           # digits, 50 epochs
    python examples/plots.py --out skcdc-plots --quick   # 10 epochs (< 1 min)

Training curves, a t-SNE map of the instance part coloured by cluster and by
class, the matched confusion matrix, and a grid of example images per cluster
(digits as 8x8 images, image mode). Needs matplotlib (``pip install 'skcdc[plot]'``).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window

from sklearn.datasets import load_digits

from skcdc import CDCClustering
from skcdc.plotting import (
    plot_cluster_examples,
    plot_confusion,
    plot_embedding,
    plot_history,
)

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("skcdc-plots"))
parser.add_argument("--quick", action="store_true", help="10 epochs")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
epochs = 10 if args.quick else 50

X, y = load_digits(return_X_y=True)
model = CDCClustering(n_clusters=10, epochs=epochs, n_init=1, random_state=0).fit(X)
plot_history(model).savefig(args.out / "history.png")
plot_embedding(model, method="tsne", labels_true=y).savefig(args.out / "embedding.png")
plot_confusion(y, model.labels_).figure.savefig(args.out / "confusion.png")

images = (X / 16).reshape(-1, 8, 8)
image_model = CDCClustering(n_clusters=10, epochs=epochs, n_init=1, random_state=0).fit(images)
plot_cluster_examples(image_model, images).savefig(args.out / "cluster_examples.png")
print("wrote", sorted(p.name for p in args.out.glob("*.png")))
