import sys

from rewardjax.cli import main

sys.exit(main())
