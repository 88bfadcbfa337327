"""The report and plots of ``jprefs eval policy`` (:func:`write_report`).

Plots: ``reward_vs_kl.png`` (mean reward against the KL estimate, 95% intervals on both),
``reward_dist.png`` and ``length_dist.png`` (histograms per policy). The report is written
through :class:`jprefs.eval.report.Report` (Markdown + self-contained HTML).

Example::

    write_report(Path("out/eval"), metrics, rows_by_policy)
"""

from __future__ import annotations

from pathlib import Path


def _plots(out: Path, metrics: dict, rows_by: dict) -> list[tuple[str, str]]:
    from jprefs.eval.plots import pyplot, save_figure

    plt = pyplot()
    made = []
    pol = metrics["policies"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, m in pol.items():
        r = m["reward"]
        kl = m.get("kl")
        x = kl["mean"] if kl else 0.0
        xerr = [[x - kl["ci95"][0]], [kl["ci95"][1] - x]] if kl else None
        ax.errorbar([x], [r["mean"]], xerr=xerr, yerr=[[r["mean"] - r["ci95"][0]], [r["ci95"][1] - r["mean"]]],
                    marker="o", capsize=3, label=name)
    ax.set_xlabel("KL to the reference (nats / answer)")
    ax.set_ylabel(f"reward ({metrics['reward']['label']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out / "reward_vs_kl.png", dpi=100)
    made.append(("reward_vs_kl.png", "mean reward against KL to the reference, 95% intervals"))
    for key, fname, xlabel in (("reward", "reward_dist.png", f"reward ({metrics['reward']['label']})"),
                               ("length", "length_dist.png", "answer length (characters)")):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        vals = {n: [float(r[key]) for r in rows] for n, rows in rows_by.items()}
        lo = min(min(v) for v in vals.values())
        hi = max(max(v) for v in vals.values())
        bins = 30 if hi > lo else 1
        for n, v in vals.items():
            ax.hist(v, bins=bins, range=(lo, hi if hi > lo else lo + 1), histtype="step", label=n, linewidth=1.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("answers")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        save_figure(fig, out / fname, dpi=100)
        made.append((fname, f"{key} distribution per policy"))
    return made



def write_report(out: Path, metrics: dict, rows_by: dict) -> None:
    from jprefs.eval.report import Report, fmt_ci

    s = metrics["settings"]
    rep = Report("jprefs eval policy")
    for w in metrics["warnings"]:
        rep.warning(w["message"])
    rep.para(f"{metrics['prompts']['n']} prompts ({metrics['prompts']['spec']}), {s['samples_per_prompt']} answers "
             f"per prompt and policy; temperature {s['temperature']}, top-k {s['top_k']}, top-p {s['top_p']}, "
             f"max_new_tokens {s['max_new_tokens']}, min_new_tokens {s['min_new_tokens']}, seed {s['seed']} "
             f"(batch b draws with seed + b, batch size {s['batch_size']}). Baseline: {metrics['baseline']}; "
             f"reference for KL and perplexity: {metrics['reference']['label']}; reward: "
             f"{metrics['reward']['label']} ({metrics['reward']['kind']}), scored on {s['reward_input']}.")
    rep.heading("Policies")
    rows = []
    for name, m in metrics["policies"].items():
        w = m.get("win_tie_loss")
        g = m.get("reward_gain")
        kl, ppl = m.get("kl"), m.get("perplexity_ref")
        dec = m["decoding"]
        label = name + (f" (ILQL, beta_gen {dec['beta_gen']:g})" if dec.get("beta_gen") is not None else "")
        rows.append([label, fmt_ci(m["reward"]["mean"], m["reward"]["ci95"]),
                     fmt_ci(g["mean"], g["ci95"]) if g else "baseline",
                     f"{w['win']:.2f} / {w['tie']:.2f} / {w['loss']:.2f}" if w else "-",
                     fmt_ci(w["at_least_as_good"], w["at_least_as_good_ci95"], 2) if w else "-",
                     f"{w['sign_test_p']:.3g}" if w else "-",
                     fmt_ci(kl["mean"], kl["ci95"]) if kl else "-",
                     fmt_ci(ppl["value"], ppl["ci95"], 2) if ppl else "-",
                     fmt_ci(m["distinct1"]), fmt_ci(m["distinct2"]), fmt_ci(m["length"]["mean"], digits=1),
                     fmt_ci(m["japanese_share"]["mean"], digits=2), fmt_ci(m["repetition_rate"]["mean"])])
    rep.table(["policy", "reward [95% CI]", "gain vs baseline", "win / tie / loss", "at least as good", "sign p",
               "KL to ref (nats)", "ppl under ref", "distinct-1", "distinct-2", "length (chars)", "Japanese share",
               "repetition"], rows)
    rep.para("reward: mean over all answers, interval bootstrapped by prompt. gain: paired by prompt and sample "
             "index. win / tie / loss: answer k of the policy against answer k of the baseline to the same prompt, "
             f"by reward (tie within {s['tie_margin']}); sign p: two-sided sign test, ties dropped. KL: mean over "
             "the policy's own answers of sum_t log p_policy - log p_ref, p_policy being the distribution the answer "
             "was drawn from. ppl: exp of the reference's mean negative log-likelihood per response token. "
             "distinct-n: distinct / all morpheme n-grams (fugashi, unidic-lite) over all answers of the policy. "
             "repetition: share of an answer's morpheme 4-grams that repeat an earlier one of the same answer. "
             "Japanese share: kana and kanji among all letters.")
    if metrics["judges"]:
        rep.heading("Extra judges")
        jrows = []
        for name, m in metrics["policies"].items():
            jrows.append([name] + [fmt_ci(m["judges"][j["label"]]["mean"], m["judges"][j["label"]]["ci95"]) + (
                f"; gain {fmt_ci(m['judges'][j['label']]['gain'], m['judges'][j['label']]['gain_ci95'])}"
                if "gain" in m["judges"][j["label"]] else "") for j in metrics["judges"]])
        rep.table(["policy"] + [f"{j['label']} ({j['kind']})" for j in metrics["judges"]], jrows)
    llm = metrics.get("llm_judge")
    if llm:
        rep.heading("LLM judge")
        rep.para(f"judge {llm['model']} at {llm['base_url']}, template {llm['template']['name']} (hash "
                 f"{llm['template']['hash']}), temperature {llm['sampling']['temperature']}; "
                 f"{llm['requests_sent']} requests sent, {llm['cache_hits']} answered from the cache"
                 + (f"; **{llm['requests_failed']} of {llm['requests']} refused by the server** (left out of "
                    "the figures below; each row's llm_judge.failed in samples.jsonl has the message)"
                    if llm.get("requests_failed") else "") + ".")
        lrows = []
        for name, m in llm["policies"].items():
            bad = ", ".join(f"{k} {v}" for k, v in m["unparseable"].items() if v) or "none"
            if llm["mode"] == "pairwise":
                w = m["win_tie_loss"]
                lrows.append([name, m["vs"], m["n_judged"],
                              f"{w['win']:.2f} / {w['tie']:.2f} / {w['loss']:.2f}" if w.get("n") else "-",
                              fmt_ci(w.get("at_least_as_good"), w.get("at_least_as_good_ci95"), 2),
                              f"{w['sign_test_p']:.3g}" if w.get("n") else "-",
                              fmt_ci(m["position_consistency"], digits=2), bad])
            else:
                lrows.append([name, m["n_graded"], fmt_ci(m["mean_score"], m["mean_score_ci95"], 2), bad])
        if llm["mode"] == "pairwise":
            rep.table(["policy", "against", "judged", "win / tie / loss", "at least as good", "sign p",
                       "position consistency", "unreadable judge answers"], lrows)
            rep.para("Each comparison is asked in both orders; two orders that disagree count as a tie. "
                     "Intervals bootstrapped by prompt; unreadable judge answers are left out, counted here.")
        else:
            rep.table(["policy", "graded", "mean score 1-10 [95% CI]", "unreadable judge answers"], lrows)
    cats = [m.get("by_category") for m in metrics["policies"].values()]
    if any(cats):
        rep.heading("By category")
        crows = []
        for name, m in metrics["policies"].items():
            for c, cm in (m.get("by_category") or {}).items():
                w = cm.get("win_tie_loss")
                crows.append([c or "(none)", name, cm["n_prompts"], fmt_ci(cm["reward"]["mean"], cm["reward"]["ci95"]),
                              f"{w['win']:.2f} / {w['tie']:.2f} / {w['loss']:.2f}" if w else "baseline",
                              fmt_ci(cm["length"], digits=1), fmt_ci(cm["japanese_share"], digits=2)])
        crows.sort(key=lambda r: (r[0], r[1]))
        rep.table(["category", "policy", "prompts", "reward", "win / tie / loss", "length", "Japanese share"], crows)
    rep.heading("Plots")
    for fname, alt in _plots(out, metrics, rows_by):
        rep.image(out / fname, alt)
    rep.heading("Samples")
    names = list(rows_by)
    first = rows_by[names[0]]
    seen = []
    for r in first:
        if r["prompt_id"] not in seen:
            seen.append(r["prompt_id"])
        if len(seen) == 5:
            break
    srows = []
    for pid in seen:
        for n in names:
            r = next(x for x in rows_by[n] if x["prompt_id"] == pid and x["sample"] == 0)
            srows.append([pid, n, r["prompt"][:200], r["response"][:300], fmt_ci(r["reward"])])
    rep.table(["prompt id", "policy", "prompt", "answer (sample 0)", "reward"], srows)
    for note in metrics["notes"]:
        rep.para("Note: " + note)
    t = metrics["throughput"]
    rep.para(f"Generation (sampling and the reference's pass, model loading excluded): {t['generated_tokens']} "
             f"tokens in {t['generation_s']} s ({t['tokens_per_s']} tokens/s); "
             f"scoring: {t['scored_per_s']} texts/s. Warning thresholds: {metrics['thresholds']}.")
    rep.write(out)
