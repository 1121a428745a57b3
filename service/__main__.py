"""``python -m service`` is the ``callvault`` command."""

import sys

from service.cli import main

sys.exit(main())
