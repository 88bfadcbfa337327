"""jprefs: Japanese preference data, reward models and RL.

The light core (data model, IO, CLI) imports no heavy dependency: torch,
transformers, datasets and vllm are imported only by the stage that needs them.

>>> from jprefs import PreferencePair, Message
>>> from jprefs import RewardModel          # imports torch lazily   # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from jprefs.data.schema import BinaryExample, Message, PreferencePair, RankList  # noqa: E402

__all__ = ["BinaryExample", "Message", "PreferencePair", "RankList", "RewardModel", "__version__"]


def __getattr__(name: str):
    # PEP 562: `from jprefs import RewardModel` loads torch only when asked for.
    if name == "RewardModel":
        from jprefs.classifiers.reward_model import RewardModel

        return RewardModel
    raise AttributeError(f"module 'jprefs' has no attribute {name!r}")
