"""Licence provenance checks.

Every record carries the licence of its source. Data whose licence is unknown
may not be redistributable: merging or exporting it warns loudly, and
``--require-license`` turns the warning into an error.

>>> check_licenses(records, action="export", require=False)   # doctest: +SKIP
"""

from __future__ import annotations

import sys
from typing import Iterable

from jprefs.data.schema import UNKNOWN_LICENSE, Record
from jprefs.errors import JprefsError


class LicenseError(JprefsError):
    """Unknown licences where ``--require-license`` was given."""


def license_counts(records: Iterable[Record]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r.license or UNKNOWN_LICENSE] = out.get(r.license or UNKNOWN_LICENSE, 0) + 1
    return out


def check_licenses(records: list[Record], *, action: str, require: bool = False, stream=None) -> dict[str, int]:
    """Warn (or raise with ``require``) when any record's licence is unknown; return the counts."""
    counts = license_counts(records)
    unknown = {r.source for r in records if (r.license or UNKNOWN_LICENSE) == UNKNOWN_LICENSE}
    return check_license_counts(counts, unknown, action=action, require=require, stream=stream)


def check_license_counts(counts: dict[str, int], unknown_sources: Iterable[str], *, action: str,
                         require: bool = False, stream=None) -> dict[str, int]:
    """:func:`check_licenses` from counts gathered while streaming (``licence -> rows``)."""
    unknown = counts.get(UNKNOWN_LICENSE, 0)
    if unknown:
        msg = (f"{unknown} of {sum(counts.values())} rows have an UNKNOWN licence (sources: "
               f"{', '.join(sorted(unknown_sources))}). You may not be allowed to redistribute data you {action}.")
        fix = ("check each source's terms and record them with `jprefs data convert ... --license SPDX-ID`, "
               "or leave those rows out")
        if require:
            raise LicenseError(f"{msg}\n  fix: {fix}")
        bar = "!" * 78
        print(f"{bar}\nWARNING: {msg}\n  {fix}\n{bar}", file=stream or sys.stderr)
    return counts
