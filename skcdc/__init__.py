"""skcdc: Contrastive representation Disentanglement for Clustering, for scikit-learn."""

from .estimator import CDCClustering

__version__ = "0.1.0"

__all__ = ["CDCClustering", "__version__"]
