"""kinfer's Kubernetes operator: reconciles InferencePipeline resources into topics, Deployments and status."""

__version__ = "0.1.0"
