"""``python -m minikto``: the same command as the ``minikto`` console script."""

from .tools.cli import main

raise SystemExit(main())
