"""``python -m okki_assets.cli`` runs the okki-assets command."""

from __future__ import annotations

import sys

from okki_assets.cli import main

sys.exit(main())
