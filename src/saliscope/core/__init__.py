"""Core abstractions: targets, explanations, model-state guards, chunked evaluation, cost accounting.

Imports nothing else from saliscope.
"""
