"""Random-number hygiene for runs that must repeat exactly.

A run's seed fixes its random streams only if nothing else draws from them between
``set_seed`` and the draws that matter (head init, dropout, sampling). One-time setup
that only *sometimes* runs - converting the e5 backbone into the cache, building a cache -
must therefore leave the global streams where it found them; otherwise the same command
and seed give one model on a fresh cache and another on a warm one (issue #11: pairwise
accuracy 0.483 vs 0.207 on the same recipe).

Example::

    with rng_untouched():
        model = BertModel(config)          # random init, then overwritten by loaded weights
    # torch.rand(1) here gives what it would have given without the block
"""

from __future__ import annotations

import contextlib
import random
import sys


@contextlib.contextmanager
def rng_untouched():
    """Run the block, then restore Python's, numpy's and torch's global RNG states (CPU and CUDA).

    numpy and torch are restored only when already imported: a module that is not loaded has
    no state to protect, and importing torch here would make light callers heavy.

    >>> import random
    >>> random.seed(0); a = random.random()
    >>> random.seed(0)
    >>> with rng_untouched():
    ...     _ = [random.random() for _ in range(5)]
    >>> random.random() == a
    True
    """
    py = random.getstate()
    np_mod = sys.modules.get("numpy")
    np_state = np_mod.random.get_state() if np_mod is not None else None
    torch = sys.modules.get("torch")
    cm = contextlib.nullcontext()
    if torch is not None:
        # fork_rng restores the CPU generator and, where CUDA is initialised, every visible GPU's
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        cm = torch.random.fork_rng(devices=devices)
    try:
        with cm:
            yield
    finally:
        random.setstate(py)
        if np_state is not None:
            np_mod.random.set_state(np_state)
