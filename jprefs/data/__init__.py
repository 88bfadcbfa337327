"""Preference data: schema, source adapters, IO, splits and exports."""

from jprefs.data.schema import (BinaryExample, Message, PreferencePair, RankList, SchemaError,  # noqa: F401
                                as_messages, expand_pairs, normalize_text, prompt_key, record_from_dict,
                                render_prompt)
from jprefs.data.io import load_binary, load_pairs, read_records, write_jsonl  # noqa: F401
