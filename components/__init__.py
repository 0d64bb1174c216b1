"""Module paths of earlier versions, kept for the state they wrote.

Pulumi stores the wiring's dynamic provider in each wiring resource's state, pickled by reference: the
state of a stack deployed before the package layout names `components.wiring.WiringProvider` (and the
API kinds under `components.wiring_api`). The engine unpickles it for refresh, update and delete, so
these names must keep resolving to the same classes (tests/test_wiring.py loads such a pickle).
"""

import sys

from mediastack.wiring import api as wiring_api
from mediastack.wiring import provider as wiring

sys.modules[f"{__name__}.wiring"] = wiring
sys.modules[f"{__name__}.wiring_api"] = wiring_api

__all__ = ["wiring", "wiring_api"]
