"""`python -m autonomys_farmer`: the same command as `autonomys-farmer`."""

import sys

from autonomys_farmer.cli import main

sys.exit(main())
