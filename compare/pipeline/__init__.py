"""The pipeline a user holds: a fitted :class:`~compare.pipeline.model.WBCModel` and its stages
(colour, scale, segment, instances, nucleus check, measure).

It stands on :mod:`compare.io` only; it never imports the evaluation, the suite or the commands.
"""
