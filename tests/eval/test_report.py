"""Reports: Markdown beside self-contained HTML, every piece of text escaped."""

import base64

from jprefs.eval.report import Report, fmt_ci


def _png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)


def test_markdown_and_html_with_embedded_plot_and_escaped_model_output(tmp_path):
    _png(tmp_path / "plot.png")
    evil = '<script>alert("x")</script> | 列を壊す\n改行'
    rep = Report("jprefs eval <test>")
    rep.heading("Samples").para(evil).warning("reward up, distinct-2 down")
    rep.table(["model", "answer"], [["a", evil]])
    rep.image(tmp_path / "plot.png", "a plot")
    md, html = rep.write(tmp_path)
    text = html.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "jprefs eval &lt;test&gt;" in text
    assert "src=\"data:image/png;base64," in text and "http" not in text.split("<body>")[1]
    data = text.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(data) == (tmp_path / "plot.png").read_bytes()
    m = md.read_text(encoding="utf-8")
    row = [line for line in m.splitlines() if line.startswith("| a |")][0]
    assert row.count(" | ") == 1 and "\\|" in row and "<br>" in row   # the answer stays in one cell
    assert "![a plot](plot.png)" in m and "> **WARNING:** reward up" in m


def test_fmt_ci():
    assert fmt_ci(0.5, [0.4, 0.6]) == "0.500 [0.400, 0.600]"
    assert fmt_ci(float("nan")) == "-" and fmt_ci(None) == "-"


def test_model_output_in_the_markdown_is_text_not_html_or_images(tmp_path):
    """report.md is pasted into model cards: a judge's explanation with <script>, <img src=...> or a Markdown
    image passed into it as markup (the HTML file escaped it already)."""
    bad = 'ok <script>alert(1)</script> <img src="http://evil.example/x.png"> ![x](http://evil.example/y.png)'
    rep = Report("t").para(bad).warning(bad).table(["a"], [[bad]]).code("x\n```\n# not a heading")
    md = rep.markdown(tmp_path)
    assert "<script>" not in md and "<img" not in md and "![x](http" not in md
    assert "&lt;script&gt;" in md and "!\\[x]\\(http://evil.example/y.png)" in md
    assert "````\nx\n```\n# not a heading\n````" in md           # a fence inside the text cannot close the block
