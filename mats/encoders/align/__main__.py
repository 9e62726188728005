"""``python -m mats.encoders.align ...`` = `mats align ...`."""
from mats.encoders.align.run import main

raise SystemExit(main())
