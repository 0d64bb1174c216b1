"""What the start page (Homepage) reads besides its config files: one secret file per widget secret.

Homepage replaces `{{HOMEPAGE_FILE_<X>}}` in its config files with the contents of the file named by the
environment variable HOMEPAGE_FILE_<X>, read as is, without trimming (gethomepage/homepage
src/utils/config/config.js `substituteEnvironmentVars` at v1.12.3): the keys stay out of the files the program
generates, and each file holds exactly the secret, with no newline after it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from mediastack.catalog.services import CATALOG, Secret, Service

FILE_PREFIX = "HOMEPAGE_FILE_"


@dataclass(frozen=True)
class KeyFile:
    service: str  # whose widget reads it
    field: str  # the widget's field: key | password
    variable: str  # HOMEPAGE_FILE_<SERVICE>_<FIELD>
    path: str  # in the start page's container
    secret: Secret


def key_files(start_page: Service, enabled: Collection[str], has_value: Callable[[Secret], bool]) -> list[KeyFile]:
    """The secret files the start page reads, for every enabled service whose widget needs a secret that has a
    value (`has_value(secret)`: a secret the user sets may be unset; then the service gets its link only)."""
    if start_page.start_page_keys is None:
        return []
    found = []
    for name in CATALOG:
        widget = CATALOG[name].widget
        if name not in enabled or widget is None:
            continue
        for field, secret in widget.secrets():
            if not has_value(secret):
                continue
            variable = f"{FILE_PREFIX}{name.upper().replace('-', '_')}_{field.upper()}"
            found.append(KeyFile(name, field, variable, f"{start_page.start_page_keys}/{name}-{field}", secret))
    return found
