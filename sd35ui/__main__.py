import sys

from sd35ui.cli import main

sys.exit(main())
