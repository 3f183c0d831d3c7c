"""Quickstart: cluster scikit-learn's digits with CDC and compare with k-means.

Runs in about 10 seconds on two CPU cores.
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from skcdc import CDCClustering
from skcdc.metrics import clustering_report

X, y = load_digits(return_X_y=True)

model = CDCClustering(n_clusters=10, random_state=0).fit(X)
print("CDC    ", clustering_report(y, model.labels_))
print("k-means", clustering_report(y, KMeans(10, n_init=10, random_state=0).fit_predict(X)))

# The two parts of the representation, and the training curve.
proba = model.predict_proba(X)  # (1797, 10): the categorical part
instance = model.transform(X)[:, model.n_clusters :]  # (1797, 128): the instance part
print(model.history_[["epoch", "loss", "cluster_entropy"]].tail(3).to_string(index=False))
print(f"label-free score: {model.score(X):.3f} (at most log 10 = {np.log(10):.3f})")
