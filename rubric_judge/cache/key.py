"""The verdict cache key: a sha256 over everything that can change the judge's answer.

Model string, api_base, decoding parameters, the rendered messages (each image replaced by the
sha256 of the exact bytes sent), the response schema, the rubric id and version (and cache
namespace), and the replicate index. Nothing else: no API keys, no timestamps, no paths.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_VERSION = 1  # bump when the key's recipe changes, so old entries are never misread


def cache_key(material: dict[str, Any]) -> str:
    canonical = json.dumps({"key_version": KEY_VERSION, **material}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
