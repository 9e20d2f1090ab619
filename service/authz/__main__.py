"""``python -m service.authz``: the authorizer, or ``hash`` to make its hashes file."""

from service.authz.server import main

raise SystemExit(main())
