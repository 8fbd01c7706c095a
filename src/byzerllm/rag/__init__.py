"""Document Q&A over the built-in store: loaders, chunking, ``DocumentIndex``, evaluation."""

from .index import Answer, BuildStats, DocumentIndex, Hit

__all__ = ["Answer", "BuildStats", "DocumentIndex", "Hit"]
