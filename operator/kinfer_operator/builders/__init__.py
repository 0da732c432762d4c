"""Pure builders of every child object of a pipeline: names and labels, the consumer and TF Serving workloads,
their volumes, and the complete desired set. Nothing here talks to Kubernetes or Kafka (an import-linter
contract in pyproject.toml enforces it)."""
