"""The platform's manifests, rendered and proven without a cluster.

Every overlay under ``manifests/overlays`` is rendered with ``kubectl kustomize``; every object is checked
against a strict schema (Kubernetes' own for built-in kinds, the pinned CRDs' for the rest); then the
platform's promises are checked on the rendered objects (:mod:`harness.checks.manifests.policies`).

Modules: ``paths`` (where things are), ``render`` (kustomize), ``crds`` (the pinned CRDs), ``schemas``
(strict validation), ``overlays`` (what each overlay promises), ``policies`` (the promises as rules),
``secrets`` (per-cluster API keys, their hashes and the job Redis password), ``extauthz`` (the API-key
authorizer as istiod's extension provider), ``validate`` (all of it for an overlay), ``cli`` (``harness manifests``).
"""
