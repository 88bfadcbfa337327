"""Credentials in URLs: one redaction helper, and a saved (redacted) config still resumes."""

import dataclasses

import pytest

from jprefs.config import config_dict, load_config, refuse_config_change, save_config
from jprefs.redact import is_redacted, redact, redact_url


@pytest.mark.parametrize("url,shown", [
    ("http://user:s3cret@host:8000/v1", "http://user:***@host:8000/v1"),
    ("https://sk-abc123@api.example.com/v1", "https://***@api.example.com/v1"),      # the key as user name
    ("http://user:@host/v1", "http://***@host/v1"),                                    # user: with no password
    ("http://user:p@ss@host/v1", "http://user:***@host/v1"),                           # a raw @ in the password
    ("http://u:%40x@host", "http://u:***@host"),
    ("https://h/v1?api-version=2024-06&api_key=k1&x=1", "https://h/v1?api-version=2024-06&api_key=***&x=1"),
    ("https://h/v1?key=k1", "https://h/v1?key=***"),
    ("https://h/v1?access_token=k1#top", "https://h/v1?access_token=***#top"),
    ("https://h/v1?subscription-key=k1&sig=k2", "https://h/v1?subscription-key=***&sig=***"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),                         # nothing to hide
    ("write to me@example.com", "write to me@example.com"),                            # not a URL
    ("error: 'http://a:b@h/v1/chat/completions' answered", "error: 'http://a:***@h/v1/chat/completions' answered"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert redact_url(shown) == shown                      # idempotent
    assert is_redacted(shown) == (shown != url)


def test_redact_walks_nested_values():
    assert redact({"a": ["http://u:p@h", 1], "b": ("x", "https://k@h")}) == {"a": ["http://u:***@h", 1],
                                                                              "b": ("x", "https://***@h")}


@dataclasses.dataclass
class _C:
    base_url: str = ""
    lr: float = 1.0


def test_saved_config_holds_no_credential_and_is_not_a_different_config(tmp_path):
    cfg = _C(base_url="http://user:s3cret@host/v1?token=t0k3n")
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "s3cret" not in text and "t0k3n" not in text and "user:***@host" in text
    saved = config_dict(load_config(_C, tmp_path / "config.yaml"))
    # resuming with the real credential on the command line again is the same config ...
    refuse_config_change(saved, cfg, (), holds="x", fix="y")
    # ... and a real change is still caught
    with pytest.raises(Exception, match=r"base_url: 'http://user:\*\*\*@host/v1\?token=\*\*\*' -> "
                                        r"'http://user:\*\*\*@other/v1\?token=\*\*\*'"):
        refuse_config_change(saved, _C(base_url="http://user:s3cret@other/v1?token=t0k3n"), (), holds="x", fix="y")
