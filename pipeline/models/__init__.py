"""Model files: the manifest, installing them (`models pull`), and finding them at run time."""

from .registry import ModelSpec, install_from, manifest, pull, require, status

__all__ = ["ModelSpec", "install_from", "manifest", "pull", "require", "status"]
