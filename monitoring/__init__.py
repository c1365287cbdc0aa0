"""Telemetry ingestion and quarantine, drift (Evidently), rollout gates, retrain policy."""
