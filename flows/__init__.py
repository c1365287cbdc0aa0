"""Prefect flows and tasks that wire components, registry and monitoring; MLflow logging lives here."""
