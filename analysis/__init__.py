"""Reads what MLflow recorded and writes comparison tables and plots. Never imports Ray."""
