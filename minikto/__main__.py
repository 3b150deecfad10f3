"""``python -m minikto``: the same command as the ``minikto`` console script."""

from .cli import main

raise SystemExit(main())
