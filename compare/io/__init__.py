"""Files and the terminal: image reading, atomic writes, label exports, overlays, progress bars.

The lowest layer: it imports nothing else of :mod:`compare`.
"""
