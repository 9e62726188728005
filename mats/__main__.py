from mats.cli import main

raise SystemExit(main())
