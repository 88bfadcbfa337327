import random

from jprefs.translate.segment import Segment, est_tokens, reassemble, segment_text, source_text


def test_roundtrip_is_identity_on_random_texts():
    rng = random.Random(0)
    words = ["alpha", "beta.", "gamma!", "\n\n", "  ", "`x y`", "https://a.b/c.", "```\ncode\n```", "\n", "delta?",
             "1.5", "ε", "日本語。", "⟦", "www.x.org"]
    for _ in range(2000):
        text = "".join(rng.choice(words) + rng.choice(["", " ", "\n"]) for _ in range(rng.randint(0, 30)))
        for budget in (1, 3, 8, 1000):
            assert source_text(segment_text(text, budget)) == text


def test_code_blocks_inline_code_and_urls_are_protected():
    text = "Try `ls -la` or see https://example.com/a_b?x=1.\n\n```sh\nrm -rf build\n```\n\nDone."
    segs = segment_text(text, 512)
    units = [s for s in segs if s.kind == "unit"]
    assert [u.text for u in units] == ["Try ⟦1⟧ or see ⟦2⟧.", "Done."]
    assert units[0].spans == ("`ls -la`", "https://example.com/a_b?x=1")
    assert any("rm -rf build" in s.text for s in segs if s.kind == "lit")
    # the translation keeps the placeholders -> code and URL come back byte for byte
    out, lost = reassemble(segs, ["⟦1⟧ か ⟦2⟧ を見てください。", "完了。"])
    assert out == "`ls -la` か https://example.com/a_b?x=1 を見てください。\n\n```sh\nrm -rf build\n```\n\n完了。"
    assert lost == 0


def test_lost_or_invented_placeholders_are_counted():
    segs = segment_text("See `a` and `b`.", 512)
    assert reassemble(segs, ["⟦1⟧を見て。"])[1] == 1             # ⟦2⟧ dropped
    assert reassemble(segs, ["⟦1⟧と⟦2⟧と⟦3⟧。"])[1] == 1         # ⟦3⟧ made up
    assert reassemble(segs, ["⟦1⟧と⟦1⟧と⟦2⟧。"])[1] == 1         # ⟦1⟧ twice


def test_units_differing_only_by_url_share_one_unit():
    a = segment_text("Read https://a.example/x for details.", 512)
    b = segment_text("Read https://b.example/y for details.", 512)
    assert a[0].text == b[0].text == "Read ⟦1⟧ for details."


def test_long_texts_split_at_paragraphs_then_sentences_under_budget():
    para = " ".join(f"This is sentence number {i} of the paragraph." for i in range(20))
    text = para + "\n\n" + para
    segs = segment_text(text, 64)
    units = [s for s in segs if s.kind == "unit"]
    assert len(units) > 4
    assert all(est_tokens(u.text) <= 64 for u in units)
    assert all(u.text.endswith(".") for u in units)  # sentence boundaries, not mid-sentence cuts
    assert source_text(segs) == text
    # under budget: not split at all
    assert [s.kind for s in segment_text(para, 10_000)] == ["unit"]


def test_text_without_letters_is_not_sent():
    assert segment_text("1234 !!", 512) == [Segment("lit", "1234 !!")]
    assert segment_text("`x`", 512) == [Segment("lit", "`x`")]
