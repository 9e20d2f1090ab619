"""Provisioning the platform on a local kind cluster: a plan of pinned steps, and a runner for it."""
