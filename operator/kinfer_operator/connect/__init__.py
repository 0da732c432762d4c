"""Kafka Connect sources of a pipeline (``spec.ingestion.connectors``): the pure plan and Strimzi manifests, the
REST client, and the side-effecting sync."""
