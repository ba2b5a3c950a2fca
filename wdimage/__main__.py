from wdimage.cli import main

raise SystemExit(main())
