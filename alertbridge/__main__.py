from alertbridge.cli import main

raise SystemExit(main())
