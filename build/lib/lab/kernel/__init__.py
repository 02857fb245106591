"""Kernels: sources, patch series, patching, variants, features and the build."""
