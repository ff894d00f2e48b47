"""Evaluation: metrics, Bjontegaard delta rate, RD studies."""
