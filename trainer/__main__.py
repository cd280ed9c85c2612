"""``python -m trainer …`` is ``refinery train …`` (the form ``ray job submit`` runs)."""
import sys

from trainer.cli import main

sys.exit(main())
