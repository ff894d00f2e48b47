import sys

from .cli import main

if __name__ == "__main__":       # not when a spawned worker (refcodec eval --jobs) re-imports it
    sys.exit(main())
