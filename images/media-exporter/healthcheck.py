"""Docker health check: the exporter's own /metrics answers."""

import os
import sys
import urllib.request

try:
    with urllib.request.urlopen(f"http://127.0.0.1:{os.environ.get('PORT', '9850')}/metrics", timeout=8) as r:
        sys.exit(0 if r.status == 200 else 1)
except OSError:
    sys.exit(1)
