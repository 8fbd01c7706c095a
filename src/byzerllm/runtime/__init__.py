"""Runtimes: where the workers of a deployment live (``ray``) and how to reach them."""

from .cluster import NAMESPACE, connect_cluster, start_local_head, stop_local_cluster

__all__ = ["NAMESPACE", "connect_cluster", "start_local_head", "stop_local_cluster"]
