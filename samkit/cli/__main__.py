"""``python -m samkit.cli ...`` (e.g. under ``torchrun --nproc_per_node N -m samkit.cli train ...``)."""

import sys

from samkit.cli.main import main

sys.exit(main())
