"""Kubernetes access for the cluster targets: objects read as JSON, port-forwards, evidence."""
