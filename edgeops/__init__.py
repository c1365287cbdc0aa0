"""edgeops: the release pipeline for on-device models (CLI, settings, errors, params)."""

__version__ = "0.1.0"
