import sys

from mixvae.cli import main

sys.exit(main())
