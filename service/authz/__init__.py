"""The gateway's API-key authorizer (``python -m service.authz``): Envoy ext_authz over salted key hashes."""
