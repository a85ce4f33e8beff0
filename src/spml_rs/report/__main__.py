"""``python -m spml_rs.report``: see :mod:`spml_rs.report.cli`."""

from spml_rs.report.cli import main

raise SystemExit(main())
