"""Runs the `dlkit` command line: `python -m dlkit doctor|data|serve|run-notebooks`."""

import sys

from dlkit.cli import main

sys.exit(main())
