"""``python -m maelab`` (also under torchrun)."""

import sys

from maelab.cli import main

sys.exit(main())
