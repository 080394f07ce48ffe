"""The cache key scheme: a sha256 over a canonical JSON of everything that can change a value.

For verdicts (planning/compile.py): the model string, api_base, decoding parameters, the rendered messages (each image replaced by the
sha256 of the exact bytes sent), the response schema, the rubric id and version (and cache
namespace), and the replicate index. Nothing else: no API keys, no timestamps, no paths.
For metric values (metrics/): the metrics and their options, and the sha256 of both inputs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_VERSION = 1  # bump when the key's recipe changes, so old entries are never misread


def cache_key(material: dict[str, Any]) -> str:
    canonical = json.dumps({"key_version": KEY_VERSION, **material}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text_sha256(canonical)


def text_sha256(text: str) -> str:
    """sha256 of a text's UTF-8 bytes, hex: how cache keys name a text input."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
