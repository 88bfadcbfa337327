"""Progress bars with throughput for long work (tqdm, to stderr).

>>> with progress(total=10, desc="rows", unit="row") as bar:   # doctest: +SKIP
...     bar.update(10)
"""

from __future__ import annotations

import os
import sys


def progress(total: int | None = None, desc: str = "", unit: str = "it", **kw):
    """A tqdm bar showing rate (``unit/s``) and ETA; quiet when ``JPREFS_NO_PROGRESS=1``."""
    from tqdm.auto import tqdm

    disable = kw.pop("disable", False) or os.environ.get("JPREFS_NO_PROGRESS") == "1"
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=disable, smoothing=0.1, **kw)
