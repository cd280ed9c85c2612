"""``python -m curate …`` is ``refinery curate …`` (the form ``ray job submit`` runs)."""
import sys

from curate.cli import main

sys.exit(main())
