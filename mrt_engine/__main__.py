"""``python -m mrt_engine`` (the v0 form ``--config X --once|--daemon`` works too)."""

import sys

from mrt_engine.cli import main

sys.exit(main())
