"""Prefect flows and tasks: orchestration, retries, logging, artifacts. No business rules here."""
