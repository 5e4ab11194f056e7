"""`python -m frontier ...` (and `accelerate launch -m frontier ...`) runs the `frontier` command line."""

import sys

from frontier.cli import main

if __name__ == "__main__":
    sys.exit(main())
