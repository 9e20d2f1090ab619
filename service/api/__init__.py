"""The HTTP API (``python -m service``): the app, its routes, the request context and the server."""
