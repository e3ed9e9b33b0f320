"""Count which LM head served each fused-head call: rlhfv's tiled CPU head or TRL's chunked head.

Instrumentation for the benchmarks and tests (production code keeps no counter): both heads the dispatcher of
`rlhfv.tiled_head_dispatch` hands calls to are replaced by counting proxies.
"""

from __future__ import annotations


def count_head_calls(patch=setattr) -> dict[str, int]:
    """Install the counting proxies and return the live counts `{"tiled": n, "trl": n}`.

    `patch(obj, name, value)` sets the attributes: `setattr` (for the rest of the process, as in a benchmark worker)
    or pytest's `monkeypatch.setattr` (undone after the test).
    """
    from rlhfv import tiled_head_dispatch

    tiled_head_dispatch.install()
    counts = {"tiled": 0, "trl": 0}

    def counting(head, path):
        class Counting:
            @staticmethod
            def apply(*args, **kwargs):
                counts[path] += 1
                return head.apply(*args, **kwargs)

        return Counting

    dispatcher = tiled_head_dispatch._HeadDispatcher
    patch(tiled_head_dispatch, "TiledLogProbFunction", counting(tiled_head_dispatch.TiledLogProbFunction, "tiled"))
    patch(dispatcher, "trl_head", counting(dispatcher.trl_head, "trl"))
    return counts
