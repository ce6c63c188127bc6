"""Topology graph built from the config, plus the observed inventory."""
from netvirt.topology.graph import PortRef, Topology

__all__ = ["PortRef", "Topology"]
