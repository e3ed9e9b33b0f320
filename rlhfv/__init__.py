"""rlhfv: Dense DPO (RLHF-V) on TRL for vision-language models and LLMs.

Heavy modules (torch, transformers, trl) are imported lazily so that `rlhfv --help` and the converter start fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "DenseDPOConfig": "rlhfv.config",
    "DenseDPOTrainer": "rlhfv.trainer",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlhfv' has no attribute {name!r}")


__all__ = ["DenseDPOConfig", "DenseDPOTrainer", "__version__"]
