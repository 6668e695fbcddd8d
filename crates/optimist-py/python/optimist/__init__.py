"""optimist: deep-learning optimizers exact to their reference implementations.

``optimist.torch`` holds one ``torch.optim.Optimizer`` subclass per optimizer
of the registry, stepping CPU tensors in place from Rust.
"""

import json as _json

from . import _optimist

__all__ = ["registry"]


def registry():
    """Every optimizer of the registry, as ``optimist list`` prints it: a list of
    dicts with ``name``, ``reference``, ``paper``, ``summary``, ``defaults`` and
    ``state_buffers`` (``None`` for optimizers that cannot keep their state in
    torch tensors)."""
    return _json.loads(_optimist.registry_json())
