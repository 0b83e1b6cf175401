"""``python -m emoctx`` runs the command line."""

import sys

from emoctx.cli import main

sys.exit(main())
