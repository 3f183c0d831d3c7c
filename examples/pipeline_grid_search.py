"""CDCClustering inside a Pipeline, tuned by GridSearchCV with and without labels.

    python examples/pipeline_grid_search.py           # 30 epochs per fit
    python examples/pipeline_grid_search.py --quick   # 10 epochs per fit (< 1 min)

With labels, ``accuracy_scorer`` (Hungarian-matched accuracy) picks the
setting. Without labels, GridSearchCV falls back to the estimator's ``score``:
the agreement between each sample's cluster and its nearest neighbours'
clusters, comparable between settings with the same ``n_clusters``.
"""

import argparse

from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcdc import CDCClustering
from skcdc.metrics import accuracy_scorer, clustering_report

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="10 epochs per fit")
args = parser.parse_args()
epochs = 10 if args.quick else 30

X, y = load_digits(return_X_y=True)
pipe = make_pipeline(
    StandardScaler(),
    PCA(n_components=32, random_state=0),
    CDCClustering(n_clusters=10, epochs=epochs, n_init=1, random_state=0),
)

# 1. With labels: which temperature of the categorical part clusters best?
grid = {"cdcclustering__tau_c": [0.2, 0.5]}
labelled = GridSearchCV(pipe, grid, scoring=accuracy_scorer, cv=2).fit(X, y)
print("with labels:  best", labelled.best_params_, f"CV accuracy {labelled.best_score_:.3f}")

# 2. Without labels: the estimator's own label-free score decides.
label_free = GridSearchCV(pipe, grid, cv=2).fit(X)
print("label-free:   best", label_free.best_params_, f"CV score {label_free.best_score_:.3f}")
print("label-free choice, scored with the labels afterwards:")
print("  ", clustering_report(y, label_free.best_estimator_.predict(X)))
