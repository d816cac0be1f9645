"""`python -m foley` runs the `foley` command."""

import sys

from foley.main import main

sys.exit(main())
