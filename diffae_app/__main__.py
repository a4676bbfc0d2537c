"""``python -m diffae_app``: the command line (see :mod:`diffae_app.cli`)."""

import sys

from .cli import main

sys.exit(main())
