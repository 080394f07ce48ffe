"""The one place litellm is imported: lazily, offline, and quiet.

litellm takes about 4 s to import and, unless told otherwise, fetches a model price map over
the network at import. Everything that needs it calls `litellm_module()`, which pins the
bundled price map first and switches off telemetry, so no import path reaches the network and
`rubric-judge --help` never pays for it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from types import ModuleType


@lru_cache(maxsize=1)
def litellm_module() -> ModuleType:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True  # local servers reject parameters they do not know
    return litellm
