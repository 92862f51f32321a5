from mrt_tui.cli import main

raise SystemExit(main())
