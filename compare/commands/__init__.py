"""The command line: ``run``, ``report``, ``predict``, ``score``, ``data``.
"""
