"""harp-plugin: robust pruning (HARP, HYDRA, stability/NRS) as Torch-Pruning plugins.

Sub-packages are imported on use (``from harp_plugin.importance import HarpImportance``) so
that ``import harp_plugin`` stays cheap.
"""
__version__ = "0.1.0"
