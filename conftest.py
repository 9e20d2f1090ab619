"""Root pytest configuration: the acceptance plugin and the step modules.

Everything else (options, ``.feature`` collection, profiles and skips, the target, evidence, fixtures)
lives in :mod:`harness.acceptance.pytest_plugin`. Options: ``--target local|kind|cluster``, ``--artifacts DIR``,
``--keep``, ``--kube-context NAME``, ``--profile NAME``.
"""

pytest_plugins = [
    "harness.acceptance.pytest_plugin",
    "steps.common",
    "steps.service",
    "steps.prometheus",
    "steps.load",
    "steps.gateway",
    "steps.scaling",
    "steps.jobs",
    "steps.cluster",
    "steps.rollout",
    "steps.models",
]
