"""Device choice and seeding for ``jprefs rl`` runs.

Example::

    device = resolve_device("auto")   # cuda when available, else cpu
    set_seed(0)                       # python, numpy and torch
"""

from __future__ import annotations

import random


def resolve_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from jprefs.classifiers.reward_model import check_device

    return torch.device(check_device(name))



def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

