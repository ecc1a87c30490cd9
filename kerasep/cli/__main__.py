"""``python -m kerasep.cli``."""
import sys

from kerasep.cli import main

sys.exit(main())
