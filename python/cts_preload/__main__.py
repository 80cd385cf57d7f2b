"""``python3 -m cts_preload``: see the package's docstring and docs/preload.md."""

import sys

from . import main

sys.exit(main())
