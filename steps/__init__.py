"""pytest-bdd step definitions, one module per area; the shared vocabulary lives in ``common``."""
