"""The report of a run folder: tables, figures, methods, HTML.
"""
