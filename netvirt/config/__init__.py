"""Tenant YAML: schema, safe loading with source locations, semantic checks."""
from netvirt.config.loader import LoadedConfig, Location, load_data, load_file, load_text

__all__ = ["LoadedConfig", "Location", "load_data", "load_file", "load_text"]
