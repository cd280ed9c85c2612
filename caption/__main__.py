import sys

from caption.cli import main

sys.exit(main())
