"""Tests that run in a Python process of their own (see tests/test_napari_plugin.py)."""
