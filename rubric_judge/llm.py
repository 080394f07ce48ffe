"""The one place litellm is imported: lazily, offline, and quiet.

litellm takes about 4 s to import and, unless told otherwise, fetches a model price map over
the network at import. Everything that needs it calls `litellm_module()`, which pins the
bundled price map first and switches off telemetry, so no import path reaches the network and
`rubric-judge --help` never pays for it.
"""

from __future__ import annotations

import atexit
import gc
import os
import warnings
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
    _memoise_instructor_model_checks()
    # litellm's acompletion runs its synchronous completion() on a thread, which returns the
    # provider's request coroutine for acompletion to await. A call cancelled meanwhile (a run
    # stopped by a full disk or Ctrl-C) drops that coroutine unawaited, and Python printed a
    # RuntimeWarning with a tracemalloc hint above the run's own error message. Nothing is lost:
    # the request was never sent.
    warnings.filterwarnings("ignore", message=r"coroutine '\w+\.acompletion' was never awaited", category=RuntimeWarning)
    _skip_success_logging_without_callbacks(litellm)
    # litellm and its dependencies leave ~300k long-lived objects; a full collection over them
    # takes ~0.2 s and stalls every request in flight. Move them out of the collector's view.
    gc.freeze()
    atexit.register(gc.unfreeze)  # let the final collection see them, so extensions can clean up
    return litellm


_CALLBACK_LISTS = ("callbacks", "success_callback", "_async_success_callback", "failure_callback", "_async_failure_callback", "service_callback", "input_callback")


def _skip_success_logging_without_callbacks(litellm: ModuleType) -> None:
    """Do not build litellm's per-call logging payload when no callback would receive it.

    After every call litellm queues a handler that recomputes costs, redacts and copies the
    messages and assembles a logging record for its callbacks (~1.7 ms of CPU per judge call
    here). rubric-judge registers no litellm callbacks and accounts for tokens and cost itself,
    so with every callback list empty the handler is dropped; if anything registers a callback,
    litellm's own behaviour returns. Nothing changes if litellm moves this function.
    """
    try:
        from litellm.litellm_core_utils import logging_worker
    except ImportError:
        return
    worker = getattr(logging_worker, "GLOBAL_LOGGING_WORKER", None)
    original = getattr(worker, "ensure_initialized_and_enqueue", None)
    if original is None or getattr(original, "_rubric_judge_wrapped", False):
        return

    def enqueue(async_coroutine):
        if any(getattr(litellm, name, None) for name in _CALLBACK_LISTS):
            return original(async_coroutine)
        async_coroutine.close()  # never awaited: close it so Python does not warn
        return None

    enqueue._rubric_judge_wrapped = True
    worker.ensure_initialized_and_enqueue = enqueue


def _memoise_instructor_model_checks() -> None:
    """Check each response model class for async validators once, not on every call.

    instructor walks a response model's whole MRO on every request to refuse async validators,
    about a fifth of the client CPU per judge call here. The answer depends only on the class,
    and our response models are cached classes, so remembering which classes passed is exact.
    Applied only if instructor still has that function; otherwise nothing changes.
    """
    try:
        from instructor.v2.validation import async_validators
    except ImportError:
        return
    original = getattr(async_validators, "reject_async_validators", None)
    if original is None or getattr(original, "_rubric_judge_memoised", False):
        return
    import weakref

    passed: weakref.WeakSet = weakref.WeakSet()

    def reject_once(response_model):
        if isinstance(response_model, type):
            if response_model in passed:
                return None
            result = original(response_model)
            passed.add(response_model)
            return result
        return original(response_model)

    reject_once._rubric_judge_memoised = True
    async_validators.reject_async_validators = reject_once
