import sys

from crossmodal_har.cli import main

if __name__ == "__main__":
    sys.exit(main())
