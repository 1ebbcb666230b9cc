"""`python -m memaudit` (also what `accelerate launch -m memaudit` runs)."""

import sys

from memaudit.integrations.cli import main

sys.exit(main())
