"""`python -m factory` is the `factory` command."""

import sys

from factory.cli import main

sys.exit(main())
