"""`python -m aam_engine`: the engine's command line (aam_engine.cli), for cluster jobs."""
import sys

from .cli import main

sys.exit(main())
