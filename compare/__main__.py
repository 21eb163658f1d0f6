"""``python -m compare``: see :mod:`compare.cli`."""

import sys

from compare.cli import main

sys.exit(main())
