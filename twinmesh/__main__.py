import sys

from twinmesh.cli import main

sys.exit(main())
