"""`python -m cloudlora` is the `cloudlora` command."""
import sys

from .cli import main

sys.exit(main())
