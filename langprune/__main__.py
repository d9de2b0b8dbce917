"""`python -m langprune`: the command line."""

import sys

from .cli import main

sys.exit(main())
