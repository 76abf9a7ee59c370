"""``python -m odegrad.gradcheck``: run the built-in suite and print its table."""

import sys

from .suite import main

sys.exit(main())
