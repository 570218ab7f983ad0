"""The web dashboard served by the gateway at ``/ui``.

``static/`` holds the single-page app (plain JavaScript modules, no build step) and its
vendored assets (Chart.js, the Inter font; see ``scripts/vendor_js.sh``). The modules here
compute each page's data from the ledger's rollups; ``tokenomy.gateway.dashboard`` serves
them under ``/ui/api/...`` behind the admin key.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
