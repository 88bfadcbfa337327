"""Engines: the registry, the openai engine against the local test server (with faults),
and an interface test of the vllm engine against a stand-in ``vllm`` module."""

import os
import sys
import time
import types

import pytest

from jprefs.errors import ConfigError
from jprefs.translate.engines import ENGINES, EngineError, Generation, Sampling, get_engine
from tests.translate.fake_server import decode


def conv(template, text):
    return template.messages([text])


def test_registry_miss_lists_available():
    with pytest.raises(ConfigError, match="available: vllm, openai, transformers"):
        get_engine("tgi", model="x")


def test_choosing_openai_does_not_import_other_backends():
    code = ("import sys; from jprefs.translate.engines import get_engine; "
            "get_engine('openai', model='m', base_url='http://127.0.0.1:9/v1'); "
            "print(any(m in sys.modules for m in ('torch', 'transformers', 'vllm')))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_openai_order_kept_under_concurrency(server, template):
    eng = get_engine("openai", model="m", base_url=server.base_url, concurrency=8)
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(40)]
    server.delay = 0.005
    gens = eng.generate([conv(template, t) for t in texts], Sampling())
    assert [decode(g.text) for g in gens] == texts
    assert all(g.finish_reason == "stop" and g.prompt_tokens > 0 and g.completion_tokens > 0 for g in gens)


def test_openai_retries_429_with_retry_after_and_500(server, template):
    eng = get_engine("openai", model="m", base_url=server.base_url, concurrency=1, backoff=0.01)
    server.fail_next(429, 2, retry_after=0.2)
    server.fail_next(500, 1)
    t0 = time.perf_counter()
    [g] = eng.generate([conv(template, "hello there")], Sampling())
    took = time.perf_counter() - t0
    assert decode(g.text) == "hello there"
    assert server.requests == 4 and eng.retries == 3
    assert took >= 0.4  # Retry-After: 0.2 honoured twice


def test_retry_after_is_a_floor_on_the_backoff_schedule(monkeypatch):
    """Retry-After can lengthen a wait but never shorten it below our own schedule: a
    proxy's `Retry-After: 0` must not turn backoff off. Dates, junk and negatives count as 0."""
    from email.utils import formatdate

    from jprefs.translate.engines import openai as oa

    eng = get_engine("openai", model="m", base_url="http://127.0.0.1:9/v1", backoff=0.5, max_backoff=4.0)
    monkeypatch.setattr(oa.random, "uniform", lambda a, b: b)  # the top of each jitter window
    schedule = [eng._delay(k, None) for k in range(5)]
    assert schedule == [0.5, 1.0, 2.0, 4.0, 4.0]
    past = formatdate(time.time() - 60, usegmt=True)
    for header in ("0", "0.0", "-5", "soon", "nan", "", past, "Mon, 99 Foo 20x"):
        assert [eng._delay(k, header) for k in range(5)] == schedule, header
    assert [eng._delay(k, "3") for k in range(5)] == [3.0, 3.0, 3.0, 4.0, 4.0]   # max(header, schedule)
    assert eng._delay(0, "100") == eng._delay(0, "inf") == 4.0                   # capped at max_backoff
    assert eng._delay(0, formatdate(time.time() + 3600, usegmt=True)) == 4.0     # an HTTP date: capped too
    assert oa._retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412487.5) == 2.5
    assert oa._retry_after_seconds("Wed, 21 Oct 2015 07:28:10 -0000", now=1445412487.5) == 2.5  # naive date


def test_a_burst_of_429_with_retry_after_0_backs_off_like_500s(server, template, monkeypatch):
    from jprefs.translate.engines import openai as oa

    monkeypatch.setattr(oa.random, "uniform", lambda a, b: b)
    slept: list[float] = []
    monkeypatch.setattr(oa.time, "sleep", slept.append)  # record the delays instead of waiting them
    delays = {}
    for status, retry_after in ((500, None), (429, 0)):
        eng = get_engine("openai", model="m", base_url=server.base_url, concurrency=1, max_retries=10,
                         backoff=0.01, max_backoff=1.0)
        server.fail_next(status, 10, retry_after=retry_after)
        slept.clear()
        [g] = eng.generate([conv(template, "a burst")], Sampling())
        assert decode(g.text) == "a burst" and eng.retries == 10   # passes with the same retry budget
        delays[status] = list(slept)
    assert delays[429] == delays[500] == [min(1.0, 0.01 * 2 ** k) for k in range(10)]


@pytest.mark.parametrize("content", [None, "", " \n\t"])
def test_openai_empty_completion_is_a_failed_attempt_and_retried(server, template, content):
    eng = get_engine("openai", model="m", base_url=server.base_url, backoff=0.001)
    server.empty_next(3, content=content)
    [g] = eng.generate([conv(template, "hello again")], Sampling())
    assert decode(g.text) == "hello again"
    assert server.requests == 4 and eng.retries == 3 and eng.empty_completions == 0


def test_openai_still_empty_after_every_retry_comes_back_empty_not_as_an_error(server, template):
    # the server is up: the job must go on and report this one unit, not stop
    eng = get_engine("openai", model="m", base_url=server.base_url, max_retries=2, backoff=0.001, concurrency=1)
    server.empty_next(3)
    gens = eng.generate([conv(template, "first"), conv(template, "second")], Sampling())
    assert [decode(g.text) for g in gens] == ["", "second"]   # in input order, the empty one included
    assert server.requests == 4 and eng.retries == 2 and eng.empty_completions == 1


def test_openai_timeout_is_retried(server, template):
    eng = get_engine("openai", model="m", base_url=server.base_url, timeout=0.3, backoff=0.01)
    server.slow_next(1.0, 1)
    [g] = eng.generate([conv(template, "slow one")], Sampling())
    assert decode(g.text) == "slow one" and eng.retries == 1


def test_openai_gives_up_after_max_retries(server, template):
    eng = get_engine("openai", model="m", base_url=server.base_url, max_retries=2, backoff=0.01)
    server.fail_next(503, 5)
    with pytest.raises(EngineError, match="after 3 attempts.*HTTP 503"):
        eng.generate([conv(template, "x y z")], Sampling())


def test_openai_connection_error_is_retried_then_reported(template):
    eng = get_engine("openai", model="m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff=0.01)
    with pytest.raises(EngineError, match="ConnectError"):
        eng.generate([conv(template, "x")], Sampling())


def test_openai_4xx_fails_fast_and_never_shows_the_key(server, template, monkeypatch):
    monkeypatch.setenv("MY_SECRET_KEY_VAR", "sk-very-secret-123")
    eng = get_engine("openai", model="m", base_url=server.base_url, api_key_env="MY_SECRET_KEY_VAR")
    assert eng._client.headers["authorization"] == "Bearer sk-very-secret-123"
    server.fail_next(401, 1)
    with pytest.raises(EngineError) as e:
        eng.generate([conv(template, "x")], Sampling())
    assert server.requests == 1  # not retried
    assert "MY_SECRET_KEY_VAR" in str(e.value) and "sk-very-secret" not in str(e.value)


def test_openai_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(server, template):
    import base64

    url = server.base_url.replace("http://", "http://user:s3cret-PASS@") + "?api-version=1&api_key=Q-s3cret"
    eng = get_engine("openai", model="m", base_url=url, max_retries=0)
    assert "s3cret" not in eng.base_url and eng.base_url.startswith("http://user:***@127.0.0.1:")
    [g] = eng.generate([conv(template, "hi there")], Sampling())
    assert decode(g.text) == "hi there"
    assert server.auth[-1] == "Basic " + base64.b64encode(b"user:s3cret-PASS").decode()
    assert server.paths[-1] == "/v1/chat/completions?api-version=1&api_key=Q-s3cret"   # endpoint before the query
    for fault in (400, 401, 503):
        server.fail_next(fault, 1)
        with pytest.raises(EngineError) as e:
            eng.generate([conv(template, "x")], Sampling())
        assert "s3cret" not in str(e.value) and "user:***@127.0.0.1" in str(e.value), str(e.value)
        assert ("the user:key in --base-url" in str(e.value)) == (fault == 401)
    down = get_engine("openai", model="m", base_url="http://key-s3cret@127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(EngineError, match=r"http://\*\*\*@127.0.0.1:9/v1/chat/completions") as e:
        down.generate([conv(template, "x")], Sampling())
    assert "s3cret" not in str(e.value)


def test_openai_masks_a_key_the_server_echoes(server, template, monkeypatch):
    monkeypatch.setenv("MY_SECRET_KEY_VAR", "sk-very-secret-123")
    eng = get_engine("openai", model="m", base_url=server.base_url, api_key_env="MY_SECRET_KEY_VAR", max_retries=0)
    server.echo_auth = True
    for fault in (401, 500):
        server.fail_next(fault, 1)
        with pytest.raises(EngineError) as e:
            eng.generate([conv(template, "x")], Sampling())
        assert "you sent Bearer ***" in str(e.value) and "sk-very-secret" not in str(e.value)


def test_openai_refuses_a_redacted_or_unusable_url():
    with pytest.raises(ConfigError, match=r"(?s)masked when it saved the config.*api_key_env=VAR"):
        get_engine("openai", model="m", base_url="http://user:***@127.0.0.1:8000/v1")
    for bad in ("127.0.0.1:8000/v1", "ftp://h/v1", "http://h:99999/v1", "http://user:s3cret@h:port/v1"):
        with pytest.raises(ConfigError, match="not a usable URL") as e:
            get_engine("openai", model="m", base_url=bad)
        assert "s3cret" not in str(e.value)


def test_openai_truncation_reported(server, template):
    eng = get_engine("openai", model="m", base_url=server.base_url)
    [g] = eng.generate([conv(template, "a long text TRUNCATE_ME here")], Sampling())
    assert g.finish_reason == "length"


# ---------------------------------------------------------------- vllm (interface test, no GPU)

class _FakeLLM:
    instances = []

    def __init__(self, **kw):
        self.kw = kw
        self.calls = []
        _FakeLLM.instances.append(self)

    def chat(self, messages, sampling_params=None, use_tqdm=True):
        self.calls.append((messages, sampling_params, use_tqdm))
        out = []
        for i, conv in enumerate(messages):
            text = "訳:" + conv[-1]["content"][-5:]
            comp = types.SimpleNamespace(text=text, finish_reason="length" if i == 1 else "stop",
                                         token_ids=list(range(len(text))))
            out.append(types.SimpleNamespace(outputs=[comp], prompt_token_ids=list(range(10 + i))))
        return out


class _FakeSamplingParams:
    def __init__(self, **kw):
        self.kw = kw


def test_vllm_engine_interface(monkeypatch, template):
    """INTERFACE TEST ONLY: vLLM is not installed here. A stand-in module checks that the
    engine passes the documented LLM(...) / SamplingParams(...) / LLM.chat(...) arguments
    and maps outputs back in order; it says nothing about real vLLM behaviour."""
    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = _FakeLLM, _FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    eng = get_engine("vllm", model="cyberagent/calm3-22b-chat", revision="abc", tensor_parallel_size=2,
                     max_model_len=8192, gpu_memory_utilization=0.85, dtype="bfloat16", seed=3)
    llm = _FakeLLM.instances[-1]
    assert llm.kw == dict(model="cyberagent/calm3-22b-chat", revision="abc", tensor_parallel_size=2,
                          max_model_len=8192, gpu_memory_utilization=0.85, dtype="bfloat16", seed=3,
                          trust_remote_code=False, enable_prefix_caching=True)
    convs = [conv(template, f"text {i}") for i in range(3)]
    gens = eng.generate(convs, Sampling(temperature=0.0, top_p=0.9, max_tokens=77, seed=5, stop=["</s>"]))
    messages, params, _ = llm.calls[-1]
    assert messages == convs
    assert params.kw == dict(temperature=0.0, top_p=0.9, max_tokens=77, seed=5, stop=["</s>"])
    assert [g.text for g in gens] == ["訳:ext 0", "訳:ext 1", "訳:ext 2"]
    assert [g.finish_reason for g in gens] == ["stop", "length", "stop"]
    assert [g.prompt_tokens for g in gens] == [10, 11, 12] and gens[0].completion_tokens == len("訳:ext 0")
    assert isinstance(gens[0], Generation)


def test_vllm_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(Exception, match=r"jprefs\[vllm\]"):
        get_engine("vllm", model="m")


def test_registry_entries_resolve():
    import importlib

    for name, target in ENGINES.items():
        mod, cls = target.split(":")
        assert hasattr(importlib.import_module(mod), cls), name
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


# ---------------------------------------------------------------- the reachability check before a job

def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # a port nothing listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_down_server_is_one_clear_error_in_seconds_not_a_minute_of_retries(pairs_file, tmp_path, capsys):
    """Default retries (6, backoff 1 s: about half a minute of sleeping at 0%) are never reached: the
    engine checks the server once before the first request."""
    from jprefs.cli import main

    port = _closed_port()
    url = f"http://user:s3cret-PASS@127.0.0.1:{port}/v1"
    t0 = time.monotonic()
    assert main(["translate", str(pairs_file), "--engine", "openai", "--model", "calm3", "--base-url", url,
                 "-o", str(tmp_path / "out")]) == 2
    assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"jprefs translate: error: cannot reach the server at {url.replace('s3cret-PASS', '***')} "
                   f"(connection refused); fix: start it (`vllm serve calm3 --port {port}`) or check --base-url")


def test_openai_check_accepts_any_http_answer_a_server_without_models_included(template):
    """404 (no /models route) and 401 are answers: the server is up, the check passes; the fake
    server of these tests has no GET at all (501) and every pipeline test runs through the check."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class NoModels(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_error(404 if "models" in self.path else 500)

        def log_message(self, *a):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), NoModels)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        port = httpd.server_address[1]
        get_engine("openai", model="m", base_url=f"http://127.0.0.1:{port}/v1?api-version=2").check()
        assert seen == ["/v1/models?api-version=2"]  # the endpoint on the path, the query kept
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_openai_check_names_dns_failures_and_connect_timeouts(monkeypatch):
    import httpx

    eng = get_engine("openai", model="m", base_url="http://no-such-host.invalid/v1")
    with pytest.raises(EngineError, match=r"cannot reach the server at http://no-such-host.invalid/v1 "
                                          r"\(the host name does not resolve\); fix: start it "
                                          r"\(`vllm serve m --port 8000`\)"):
        eng.check()

    def slow(*a, **k):
        raise httpx.ConnectTimeout("timed out")

    monkeypatch.setattr(eng._client, "get", slow)
    with pytest.raises(EngineError, match=r"no answer to the connection within 5 s\); fix: start it"):
        eng.check()


def test_openai_engine_needs_no_openai_sdk(server, template, monkeypatch):
    """The engine is raw httpx (the SDK port measured 2.3-2.7x slower per request, see
    bench/translate_openai_sdk.py), and there is no [openai] extra: it must work without the SDK."""
    monkeypatch.setitem(sys.modules, "openai", None)  # import openai -> ImportError
    eng = get_engine("openai", model="m", base_url=server.base_url)
    [g] = eng.generate([conv(template, "no sdk here")], Sampling())
    assert decode(g.text) == "no sdk here"


def test_openai_masks_basic_credentials_the_server_echoes(server, template):
    """user:password in --base-url goes out as "Basic base64(user:password)"; a server that echoed the header
    put that base64 (which decodes to the password) into the error."""
    import base64

    eng = get_engine("openai", model="m", base_url=server.base_url.replace("http://", "http://alice:PWSECRET99@"),
                     max_retries=0)
    server.echo_auth = True
    server.fail_next(401, 1)
    with pytest.raises(EngineError) as e:
        eng.generate([conv(template, "x")], Sampling())
    assert base64.b64encode(b"alice:PWSECRET99").decode() not in str(e.value) and "Basic ***" in str(e.value)
