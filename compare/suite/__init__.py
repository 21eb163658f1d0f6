"""The comparison suite: data sets, protocols, the runner, statistics and the report.
"""
