"""``python -m mrigan.app ...`` (e.g. under ``torchrun``) runs the command line."""

import sys

from mrigan.app.cli import main

sys.exit(main())
