"""The Siamese model: networks, data, training and the inference ``Embedder``.

This package imports nothing else of the project, so evaluation and training
run without the services.
"""

from model.embedder import DEFAULT_CHECKPOINT, FIVE_VIEW_CHECKPOINT, Embedder, load_embedder

__all__ = ["DEFAULT_CHECKPOINT", "FIVE_VIEW_CHECKPOINT", "Embedder", "load_embedder"]
