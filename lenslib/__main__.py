from lenslib.cli import main

raise SystemExit(main())
