"""Flower's configuration file (`celery -A infatium flower --conf=infatium/flowerconfig.py`).

Flower executes this file and reads its module-level names as options. HTTP basic auth comes
from FLOWER_BASIC_AUTH (user:password, or FLOWER_BASIC_AUTH_FILE), read through the settings; it
is required unless DEBUG is on. The password stays out of the command line (`ps` shows that).
Flower's own Prometheus metrics are at /metrics, which Flower serves without authentication.
"""

import sys

from django.conf import settings

if settings.FLOWER_BASIC_AUTH:
    # One entry: Flower's own reading of FLOWER_BASIC_AUTH would split a password at commas.
    basic_auth = [settings.FLOWER_BASIC_AUTH]
elif settings.DEBUG:
    basic_auth = []  # development: open (an empty FLOWER_BASIC_AUTH would lock everyone out)
else:
    sys.exit(
        "FLOWER_BASIC_AUTH is required when DEBUG is off: set it to user:password "
        "(or FLOWER_BASIC_AUTH_FILE to a file holding it)"
    )
