"""The thin layer that talks to the Kubernetes API; everything else in the operator is handed its results."""
