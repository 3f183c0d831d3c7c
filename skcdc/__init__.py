"""skcdc: Contrastive representation Disentanglement for Clustering, for scikit-learn."""

from ._version import __version__
from .estimator import CDCClustering

__all__ = ["CDCClustering", "__version__"]
