"""Small fixtures in the exact Hub schemas of the source sets (written for these tests)."""

import json
from pathlib import Path


def H(*turns):
    return "".join(f"\n\n{r}: {c}" for r, c in turns)


HH_ROWS = [
    # 0 ok, single turn
    {"chosen": H(("Human", "Hi?"), ("Assistant", "Hello! How can I help?")),
     "rejected": H(("Human", "Hi?"), ("Assistant", "Go away."))},
    # 1 ok, multi-turn
    {"chosen": H(("Human", "A?"), ("Assistant", "B."), ("Human", "C?"), ("Assistant", "Good D.")),
     "rejected": H(("Human", "A?"), ("Assistant", "B."), ("Human", "C?"), ("Assistant", "Bad D."))},
    # 2 identical
    {"chosen": H(("Human", "X?"), ("Assistant", "Y.")), "rejected": H(("Human", "X?"), ("Assistant", "Y."))},
    # 3 missing final assistant turn
    {"chosen": H(("Human", "X?"), ("Assistant", "Y."), ("Human", "Z?")),
     "rejected": H(("Human", "X?"), ("Assistant", "W."), ("Human", "Z?"))},
    # 4 diverges earlier
    {"chosen": H(("Human", "X?"), ("Assistant", "Y."), ("Human", "Z?"), ("Assistant", "1")),
     "rejected": H(("Human", "X?"), ("Assistant", "Q."), ("Human", "Z?"), ("Assistant", "2"))},
    # 5 empty final rejected
    {"chosen": H(("Human", "X?"), ("Assistant", "Y.")), "rejected": H(("Human", "X?"), ("Assistant", ""))},
    # 6 consecutive human turns inside the prompt: merged
    {"chosen": H(("Human", "First."), ("Human", "Second?"), ("Assistant", "Good.")),
     "rejected": H(("Human", "First."), ("Human", "Second?"), ("Assistant", "Bad."))},
    # 7 forked: chosen glues two assistant turns at the end
    {"chosen": H(("Human", "X?"), ("Assistant", "Y. Human: more?"), ("Assistant", "Z.")),
     "rejected": H(("Human", "X?"), ("Assistant", "W."))},
    # 8 empty prompt turn
    {"chosen": H(("Human", ""), ("Assistant", "Y.")), "rejected": H(("Human", ""), ("Assistant", "Z."))},
    # 9 non-string field
    {"chosen": 5, "rejected": H(("Human", "X?"), ("Assistant", "Z."))},
    # 10 text before the first marker
    {"chosen": "preamble" + H(("Human", "X?"), ("Assistant", "Y.")), "rejected": "preamble" + H(("Human", "X?"), ("Assistant", "Z."))},
]
HH_EXPECTED_REASONS = {2: "identical_responses", 3: "no_final_assistant_turn", 4: "diverges_before_final_turn",
                       5: "empty_rejected", 7: "diverges_before_final_turn", 8: "empty_prompt_turn",
                       9: "non_string_chosen", 10: "malformed_transcript"}

WEBGPT_ROWS = [
    {"question": {"dataset": "eli5", "id": "a", "full_text": "Why?"}, "quotes_0": {"title": [], "extract": []},
     "answer_0": "Because A.", "tokens_0": [], "score_0": -0.5,
     "quotes_1": {"title": [], "extract": []}, "answer_1": "Because B.", "tokens_1": [], "score_1": 0.5},
    {"question": {"dataset": "eli5", "id": "b", "full_text": "How?"}, "quotes_0": {"title": [], "extract": []},
     "answer_0": "Like this.", "tokens_0": [], "score_0": 0.0,
     "quotes_1": {"title": [], "extract": []}, "answer_1": "Like that.", "tokens_1": [], "score_1": 0.0},
    {"question": {"dataset": "eli5", "id": "c", "full_text": "What?"}, "quotes_0": {"title": [], "extract": []},
     "answer_0": "", "tokens_0": [], "score_0": 1.0,
     "quotes_1": {"title": [], "extract": []}, "answer_1": "This.", "tokens_1": [], "score_1": 0.0},
    {"question": {"dataset": "eli5", "id": "d", "full_text": "Who?"}, "quotes_0": {"title": [], "extract": []},
     "answer_0": "Me.", "tokens_0": [], "score_0": "high",
     "quotes_1": {"title": [], "extract": []}, "answer_1": "You.", "tokens_1": [], "score_1": 0.0},
]

GPTJ_ROWS = [
    {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "A chair."},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": None},
    {"prompt": "Count to three.", "chosen": "1, 2, 3.", "rejected": "1, 2, 3."},
]

SUMMARIZE_ROWS = [
    {"info": {"id": "t3_1", "post": "Long post about my cat.", "title": "Cat", "subreddit": "cats", "site": None, "article": None},
     "summaries": [{"text": " Cat post summary.", "policy": "ref", "note": None},
                   {"text": " Bad.", "policy": "sup", "note": None}],
     "choice": 1, "worker": "w", "batch": "b", "split": "train", "extra": {"confidence": 7}},
    {"info": {"id": "cnn_1", "post": None, "title": "News", "subreddit": None, "site": "cnn", "article": "An article."},
     "summaries": [{"text": " Good summary.", "policy": "ref", "note": None},
                   {"text": " Worse summary.", "policy": "sup", "note": None}],
     "choice": 0, "worker": "w", "batch": "b", "split": "valid", "extra": {"confidence": None}},
    {"info": {"id": "t3_2", "post": "P.", "title": "T", "subreddit": "s", "site": None, "article": None},
     "summaries": [{"text": " a", "policy": "ref", "note": None}, {"text": " b", "policy": "sup", "note": None}],
     "choice": 2, "worker": "w", "batch": "b", "split": "train", "extra": {}},
]


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path
