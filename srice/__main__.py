import sys

from srice.cli import main

sys.exit(main())
