"""Scaling laws, emergence detection, predictions and observational scaling.

Takes pandas DataFrames (the ResultRow columns); never imports torch, the runner or the store.
"""
