"""``python -m harness.manifests``: the ``harness manifests`` command on its own."""

import sys

from harness.manifests.cli import main

sys.exit(main())
