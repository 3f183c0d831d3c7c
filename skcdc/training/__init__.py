"""Training: the loop (:mod:`.engine`), its callbacks, one run from one seed
(:mod:`.runs`), restarts and their selection or consensus, and image mode's
refinement stage (:mod:`.stages`)."""

from .stages import Result, train

__all__ = ["Result", "train"]
