"""Provisioning the platform: profiles, the install plan, tools, preflight, and the environment functions
that ``harness up/down/status`` and the kind target share."""
