"""Live human rewards for PPO (``reward_type: human``): rollouts go to the labelling app, people
score them in the browser, the PPO step waits for the batch.

Set-up::

    jprefs label serve --db human.sqlite --mode reward --annotators sato      # the app (no input file)
    jprefs rl rl/recipes/ppo-human-tiny.yaml -o runs/ppo-human                  # human_db: human.sqlite

Each batch of rollouts becomes ``reward`` items in the database (``run``, ``batch``, ``index``),
keyed by a hash of the run, the batch's texts and the position, so a batch that is sampled again
(after a stop, the same seed gives the same texts) finds the scores already given instead of
asking again. The step waits up to ``human_timeout_s`` for ``human_labels`` scores per rollout;
on a timeout the run stops with a message (the rollouts stay in the database, and scores given
later count): rerun the same command and it resumes from its newest checkpoint (set
``save_every: 1`` so that is the step that waited). A 1-5 score maps to ``(s - 3) / 2`` in
[-1, 1] and thumbs to +1 / -1; the first ``human_labels`` annotators' rewards are averaged
(``human_labels`` may not exceed the app's ``--overlap``: more scores would never come).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from jprefs.errors import ConfigError, JprefsError


class HumanRewardTimeout(JprefsError):
    """Not every rollout got its human score in time."""


def human_value(value: dict) -> float:
    """A label as a reward in [-1, 1].

    >>> human_value({"score": 5}), human_value({"score": 3}), human_value({"thumb": "down"})
    (1.0, 0.0, -1.0)
    """
    if "thumb" in value:
        return 1.0 if value["thumb"] == "up" else -1.0
    return (float(value["score"]) - 3.0) / 2.0


def human_reward(db: str | Path, *, run: str, timeout_s: float = 600.0, need: int = 1, poll_s: float = 0.5,
                 log=None):
    """A reward function ``(prompts, responses) -> list[float]`` answered by people through the
    labelling database ``db`` (made by ``jprefs label serve --mode reward``)."""
    from jprefs.label.store import Store

    p = Path(db)
    if not p.exists():
        raise ConfigError(f"human_db={db}: no such labelling database\n  fix: start the app first: "
                          f"jprefs label serve --db {db} --mode reward --annotators NAME")
    st = Store(p, create=False)
    if st.mode != "reward":
        raise ConfigError(f"human_db={db} is a {st.mode!r} labelling database, not 'reward'\n  fix: "
                          f"jprefs label serve --db NEW.sqlite --mode reward")
    if need < 1:
        raise ConfigError(f"human_labels={need}: each rollout needs at least one score")
    overlap = int(st.get_meta("overlap", 1) or 1)
    if need > overlap:                  # the app stops offering an item after `overlap` scores: a wait to the timeout
        raise ConfigError(f"human_labels={need} but {db} offers each rollout to {overlap} annotator(s) "
                          f"(--overlap {overlap}), so no rollout would get {need} scores\n  fix: human_labels="
                          f"{overlap}, or serve the database with --overlap {need}")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))

    def fn(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        batch = hashlib.sha256(json.dumps([run, list(prompts), list(responses)], ensure_ascii=False)
                               .encode("utf-8")).hexdigest()[:16]
        ids = [f"{run}:{batch}:{i}" for i in range(len(responses))]
        st.add_items((iid, {"prompt": pr, "response": r, "run": run, "batch": batch, "index": i,
                            "license": "unknown"}, f"rl:{run}")
                     for i, (iid, pr, r) in enumerate(zip(ids, prompts, responses)))
        t0 = time.monotonic()
        last = [0.0]

        def waiting(done: int, total: int) -> None:
            if time.monotonic() - last[0] >= 10:
                last[0] = time.monotonic()
                log(f"human reward: batch {batch}: {done}/{total} scored, waiting "
                    f"({time.monotonic() - t0:.0f} s of {timeout_s:.0f} s)")

        got = st.wait_for_labels(ids, need=need, timeout_s=timeout_s, poll_s=poll_s, on_wait=waiting)
        missing = [i for i in ids if len(got[i]) < need]
        if missing:
            raise HumanRewardTimeout(
                f"waited {timeout_s:.0f} s: {len(missing)} of {len(ids)} rollouts of batch {batch} have no human "
                f"score yet (they stay in {db})\n  fix: score them in the app and rerun the same command: the run "
                f"resumes from its newest checkpoint (save_every: 1 keeps that the step that waited), or raise "
                f"human_timeout_s")
        return [sum(human_value(r["value"]) for r in got[i][:need]) / need for i in ids]

    return fn
