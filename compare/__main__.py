"""``python -m compare``: see :mod:`compare.commands.cli`."""

import sys

from compare.commands.cli import main

sys.exit(main())
