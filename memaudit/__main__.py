"""`python -m memaudit` (also what `accelerate launch -m memaudit` runs)."""

import sys

from memaudit.cli import main

sys.exit(main())
