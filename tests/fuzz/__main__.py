"""``python -m tests.fuzz``: see :mod:`tests.fuzz.harness`."""

import sys

from tests.fuzz.harness import main

sys.exit(main())
