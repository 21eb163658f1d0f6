"""The evaluator: pixel, boundary and object scores of predicted labels against true masks.

It stands on :mod:`compare.pipeline` and :mod:`compare.io`.
"""
