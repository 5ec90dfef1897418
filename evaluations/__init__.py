"""Scorers, prompt sets, tables and plots (imported as ``bench.evaluations``)."""
