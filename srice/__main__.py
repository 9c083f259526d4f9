import sys

from srice.app.cli import main

sys.exit(main())
