"""The report of ``jprefs eval rm``: leaderboard per data set, agreement, one section per model.

:func:`build_report` turns the ``metrics.json`` dict that :func:`jprefs.eval.rm.run_rm` writes (and
the names of the plots beside it) into a :class:`jprefs.eval.report.Report`; every figure in it is
read from that dict, so the report and ``metrics.json`` cannot disagree.

Example::

    build_report(json.load(open("out/metrics.json")), plots={}).write("out")
"""

from __future__ import annotations

from jprefs.eval.report import Report, fmt_ci

SUBSET_NAMES = (("chosen_shorter", "chosen shorter (length-controlled)"), ("chosen_longer", "chosen longer"),
                ("equal_length", "equal length"), ("length_matched", "length-matched"))


def fingerprint_text(fp: dict | None) -> str:
    """The recorded ``fingerprint`` of a model (:func:`jprefs.eval.rm.model_fingerprint`) in words:
    ``weights SHA-256 3f9a0c1d22be``, and for a Hub model ``, from org/name at commit 1b2c3d4e5f60
    (revision main)``; empty when nothing was recorded (an older report)."""
    fp = fp if isinstance(fp, dict) else {}
    parts = []
    if isinstance(fp.get("weights_sha256"), str):
        parts.append(f"weights SHA-256 {fp['weights_sha256'][:12]}")
    if fp.get("hub_id"):
        at = f" at commit {str(fp['commit'])[:12]}" if fp.get("commit") else " (commit not recorded)"
        parts.append(f"from {fp['hub_id']}{at} (revision {fp.get('revision') or 'main'})")
    return ", ".join(parts)


def _acc_n(est, ci, n) -> str:
    return f"{fmt_ci(est, ci)} (n={n})" if n else "- (n=0)"


def _no_ci(x) -> bool:
    """No interval: missing (null) or NaN (fewer than two prompts to resample)."""
    return x is None or x != x


def _warnings(rep: Report, model: str, data: str, m: dict) -> None:
    acc, base = m["pairwise_accuracy"], m["length_baseline_accuracy"]
    d, (lo, hi) = m["accuracy_minus_length_baseline"], m["accuracy_minus_length_baseline_ci95"]
    diff = fmt_ci(d, [lo, hi])
    if _no_ci(lo) and d is not None:
        rep.warning(f"{model} on {data}: accuracy {acc:.3f} against longer wins {base:.3f}: the paired difference "
                    f"{diff} has no interval (fewer than two prompts to resample), so nothing is shown either way.")
    elif hi < 0:
        rep.warning(f"{model} on {data}: accuracy {acc:.3f} is below the longer-wins baseline {base:.3f} "
                    f"(paired difference {diff}): picking the longer answer does better.")
    elif lo <= 0:
        rep.warning(f"{model} on {data}: accuracy {acc:.3f} against longer wins {base:.3f}: the paired difference "
                    f"{diff} includes 0, so it is not shown to beat 'the longer answer wins'.")
    lc, lci = m["length_controlled_accuracy"], m["length_controlled_ci95"]
    if lc is not None and lci[1] is not None and lci[1] < 0.5:
        rep.warning(f"{model} on {data}: below chance on the {m['length_controlled_n']} pairs whose chosen answer is "
                    f"the shorter one ({fmt_ci(lc, lci)}): it prefers longer answers.")
    longer = m["length_subsets"]["chosen_longer"]
    if longer["accuracy"] is not None and longer["ci95"][1] is not None and longer["ci95"][1] < 0.5:
        rep.warning(f"{model} on {data}: below chance on the {longer['n']} pairs whose chosen answer is the longer one "
                    f"({fmt_ci(longer['accuracy'], longer['ci95'])}): it prefers shorter answers.")
    if "accuracy_minus_probe" in m:
        d, (lo, hi) = m["accuracy_minus_probe"], m["accuracy_minus_probe_ci95"]
        if _no_ci(lo) or lo <= 0:
            rep.warning(f"{model} on {data}: not shown to beat the probe baseline (frozen embeddings + log length): "
                        f"paired difference {fmt_ci(d, [lo, hi])}"
                        + (" has no interval (fewer than two prompts)." if _no_ci(lo) else
                           " is below 0." if hi < 0 else " includes 0."))
    sp = m["reward_length_corr"]["spearman"]
    if sp is not None and sp == sp and abs(sp) >= 0.5:
        rep.warning(f"{model} on {data}: the reward correlates with length (Spearman {sp:.2f}).")


def _probe_section(rep: Report, probe: dict, data: dict) -> None:
    rep.heading("Probe baseline")
    cv = probe["cv_accuracy"]
    rep.para(f"score = w . standardised embedding + a * log(characters); {probe['backbone']} frozen, "
             f"{probe['pooling']} pooling, input prefix {probe['input_prefix']!r}, max_length {probe['max_length']}, "
             f"max_prompt_length {probe['max_prompt_length']}. Fit on {probe['n_train_pairs']} pairs "
             f"({probe['n_train_prompts']} prompts) of {probe['train']}: logistic regression on pair differences, "
             f"no intercept; L2 {probe['l2']:g} chosen by {probe['folds']}-fold cross-validation grouped by prompt "
             f"on those pairs (held-out accuracy " + (f"{cv:.3f}" if cv is not None else "-") + "); length weight "
             f"a = {probe['length_weight']:.3f} per log-character (> 0: longer scores higher). The fitted probe is "
             f"in {probe['file']}, its scores in {probe['scores']}.")
    rows = []
    for name, d in data.items():
        pb = d["probe_baseline"]
        rows.append([name, fmt_ci(pb["accuracy"], pb["ci95"]), fmt_ci(d["length_baseline_accuracy"]),
                     fmt_ci(pb["accuracy_minus_length_baseline"], pb["accuracy_minus_length_baseline_ci95"]),
                     _acc_n(pb["length_controlled_accuracy"], pb["length_controlled_ci95"], pb["length_controlled_n"]),
                     _acc_n(pb["length_matched_accuracy"], pb["length_matched_ci95"], pb["length_matched_n"])])
    rep.table(["data", "probe accuracy [95% CI]", "longer wins", "probe - longer wins (paired)",
               "probe length-controlled (chosen shorter)", "probe length-matched"], rows)
    for name, d in data.items():
        if d["probe_baseline"]["prompts_shared_with_train"]:
            rep.warning(f"{name}: {d['probe_baseline']['prompts_shared_with_train']} of its prompts are also in the "
                        f"probe's training file: the probe has seen them and its figures there are optimistic.")


def build_report(metrics: dict, plots: dict | None = None) -> Report:
    """The :class:`Report` of one ``jprefs eval rm`` run (``plots``: what ``_plots`` wrote, or empty)."""
    plots = plots or {}
    res, data, models = metrics["results"], metrics["data"], metrics["models"]
    rep = Report("jprefs eval rm")
    rep.code(metrics["command"])
    rep.para(f"{metrics['date']}, jprefs {metrics['jprefs']}. Intervals: {metrics['bootstrap']}, seed "
             f"{metrics['seed']}. Lengths: {metrics['length_unit']}; length-matched pairs differ by at most "
             f"{metrics['length_match_tolerance']:.0%} of the longer response. A tie counts 1/2, in the accuracy "
             f"and in the length baselines.")

    probe = metrics.get("probe")
    rep.heading("Data")
    rows = []
    for name, d in data.items():
        pb = [fmt_ci(d["probe_baseline"]["accuracy"], d["probe_baseline"]["ci95"])] if probe else []
        rows.append([name, d["path"], d["layout"], d["rows_in"], d["rows_rejected"], d["n_pairs"], d["n_prompts"],
                     fmt_ci(d["length_baseline_accuracy"], d["length_baseline_ci95"]), *pb,
                     fmt_ci(d["shorter_baseline_accuracy"], d["shorter_baseline_ci95"]),
                     d["chosen_shorter_n"], d["length_matched_n"],
                     f"{d['mean_len_chosen']:.0f} / {d['mean_len_rejected']:.0f}"])
    rep.table(["data", "file", "layout", "rows read", "rejected", "pairs", "prompts", "longer wins",
               *(["probe"] if probe else []), "shorter wins",
               "chosen shorter", "length-matched", "mean length chosen / rejected"], rows)
    for name, d in data.items():
        if d["rows_rejected"]:
            reasons = ", ".join(f"{k} {v}" for k, v in d["rejects_by_reason"].items())
            rep.warning(f"{name}: {d['rows_rejected']} of {d['rows_in']} rows were rejected while reading ({reasons}); "
                        f"they are in rejects.jsonl and not scored.")

    if probe:
        _probe_section(rep, probe, data)

    for name in data:
        rep.heading(f"Leaderboard: {name}")
        rows = []
        pb = data[name].get("probe_baseline")
        for i, r in enumerate(metrics["leaderboard"][name], 1):
            vs_probe = [fmt_ci(pb["accuracy"]), fmt_ci(r["accuracy_minus_probe"], r["accuracy_minus_probe_ci95"])] \
                if pb else []
            rows.append([i, r["model"], fmt_ci(r["pairwise_accuracy"], r["ci95"]),
                         fmt_ci(data[name]["length_baseline_accuracy"]),
                         fmt_ci(r["accuracy_minus_length_baseline"], r["accuracy_minus_length_baseline_ci95"]),
                         *vs_probe,
                         _acc_n(r["length_controlled_accuracy"], r["length_controlled_ci95"], r["length_controlled_n"]),
                         _acc_n(r["length_matched_accuracy"], r["length_matched_ci95"], r["length_matched_n"]),
                         fmt_ci(r["pair_ece"]), fmt_ci(r["reward_length_spearman"], digits=2)])
        if pb:         # the baselines as rows of the same table, for reading down a column
            rows.append(["-", "longer wins (baseline)", fmt_ci(data[name]["length_baseline_accuracy"],
                                                               data[name]["length_baseline_ci95"]),
                         "-", "-", "-", "-", _acc_n(0.0, [0.0, 0.0], data[name]["chosen_shorter_n"]),
                         "-", "-", "-"])
            rows.append(["-", "probe (frozen embeddings + log length)", fmt_ci(pb["accuracy"], pb["ci95"]), "-",
                         fmt_ci(pb["accuracy_minus_length_baseline"], pb["accuracy_minus_length_baseline_ci95"]),
                         "-", "-",
                         _acc_n(pb["length_controlled_accuracy"], pb["length_controlled_ci95"],
                                pb["length_controlled_n"]),
                         _acc_n(pb["length_matched_accuracy"], pb["length_matched_ci95"], pb["length_matched_n"]),
                         "-", "-"])
        rep.table(["#", "model", "accuracy [95% CI]", "longer wins", "accuracy - longer wins (paired)",
                   *(["probe", "accuracy - probe (paired)"] if pb else []),
                   "length-controlled (chosen shorter)",
                   "length-matched", "ECE", "Spearman reward~length"], rows)
        if name in plots.get("leaderboard", {}):
            rep.image(plots["leaderboard"][name], f"{name}: accuracy with 95% intervals; dashed: longer wins"
                      + ("; dash-dot: probe" if pb else ""))
        for r in metrics["leaderboard"][name]:
            _warnings(rep, r["model"], name, res[r["model"]][name])
        if metrics.get("agreement", {}).get(name):
            rep.heading(f"Agreement between models: {name}", 3)
            rep.para("Same winner: the share of pairs where both models pick the same response (a tie is its own "
                     "pick). Accuracy difference: a paired bootstrap over the same pairs, by prompt.")
            rep.table(["model A", "model B", "same winner [95% CI]", "accuracy A - B [95% CI]", "pairs"],
                      [[a["a"], a["b"], fmt_ci(a["agreement"], a["ci95"]),
                        fmt_ci(a["accuracy_diff"], a["accuracy_diff_ci95"]), a["n"]]
                       for a in metrics["agreement"][name]])

    for model, info in models.items():
        rep.heading(f"Model: {model}")
        if "parts" in info:         # a frozen reward stack: no logits, its parts on a frozen backbone
            what = f"a frozen stack of {', '.join(info['parts'])} on {info['base_model']}, offset {info['center']:.4f}"
        else:
            what = (f"objective {info['objective']}, {info['num_labels']} logit(s), reward = logit {info['chosen_index']}"
                    + (f" ({info['labels'][info['chosen_index']]})" if info["num_labels"] > 1 and info["labels"] else "")
                    + f", centring constant {info['center']:.4f}")
        fp = fingerprint_text(info.get("fingerprint"))
        rep.para(f"{info['path']}: {info['class']}, {what}, pooling {info['pooling']}, input {info['input']}."
                 + (f" Identity: {fp}." if fp else ""))
        for name in data:
            m = res[model][name]
            rep.heading(f"{model} on {name}", 3)
            rows = [["pairwise accuracy", fmt_ci(m["pairwise_accuracy"], m["ci95"]), m["n_pairs"], "-"],
                    ["longer wins (baseline)", fmt_ci(m["length_baseline_accuracy"], m["length_baseline_ci95"]),
                     m["n_pairs"], "-"],
                    ["shorter wins (baseline)", fmt_ci(m["shorter_baseline_accuracy"], m["shorter_baseline_ci95"]),
                     m["n_pairs"], "-"],
                    ["accuracy - longer wins (paired, by prompt)",
                     fmt_ci(m["accuracy_minus_length_baseline"], m["accuracy_minus_length_baseline_ci95"]),
                     m["n_pairs"], "-"]]
            pb = data[name].get("probe_baseline")
            if pb:
                rows[2:2] = [["probe baseline (frozen embeddings + log length)", fmt_ci(pb["accuracy"], pb["ci95"]),
                              m["n_pairs"], "-"]]
                rows.append(["accuracy - probe (paired, by prompt)",
                             fmt_ci(m["accuracy_minus_probe"], m["accuracy_minus_probe_ci95"]), m["n_pairs"], "-"])
            for key, label in SUBSET_NAMES:
                s = m["length_subsets"][key]
                rows.append([label, fmt_ci(s["accuracy"], s["ci95"]), s["n"], fmt_ci(s["longer_wins"])])
            if pb:
                rows.append(["probe on the chosen-shorter pairs (length-controlled)",
                             fmt_ci(pb["length_controlled_accuracy"], pb["length_controlled_ci95"]),
                             pb["length_controlled_n"], fmt_ci(0.0 if pb["length_controlled_n"] else None)])
            rep.table(["figure", "value [95% CI]", "pairs", "longer wins on these pairs"], rows)
            rc, mc = m["reward_length_corr"], m["margin_length_corr"]
            rep.table(["figure", "value"], [
                ["mean reward chosen / rejected", f"{fmt_ci(m['mean_reward_chosen'])} / {fmt_ci(m['mean_reward_rejected'])}"],
                ["mean margin r_c - r_r", fmt_ci(m["mean_margin"])],
                ["reward ~ length (both responses): Pearson / Spearman",
                 f"{fmt_ci(rc['pearson'], digits=2)} / {fmt_ci(rc['spearman'], digits=2)}"],
                ["margin ~ length difference: Pearson / Spearman", f"{fmt_ci(mc['pearson'], digits=2)} / {fmt_ci(mc['spearman'], digits=2)}"],
                ["ECE (pairs, sigmoid of the margin)", fmt_ci(m["pair_ece"])],
            ])
            for dim, groups in m.get("breakdown", {}).items():
                rep.para(f"By {dim}:")
                rep.table([dim, "pairs", "accuracy [95% CI]", "longer wins", "length-controlled"],
                          [[k, g["n_pairs"], fmt_ci(g["pairwise_accuracy"], g["ci95"]),
                            fmt_ci(g["length_baseline_accuracy"]),
                            _acc_n(g["length_controlled_accuracy"], g["length_controlled_ci95"],
                                   g["length_controlled_n"])] for k, g in groups.items()])
            for f in m.get("plots", []):
                what = ("reliability: confidence of the predicted winner against how often it is the chosen response"
                        if f.endswith("_reliability.png") else "rewards of chosen and rejected responses"
                        if f.endswith("_rewards.png") else "reward against response length (characters)")
                rep.image(f, f"{model} on {name}: {what}")

    rep.heading("How to read this")
    if probe:
        rep.para("The probe baseline is a logistic model on the FROZEN backbone's embeddings of the same "
                 "(prompt, response) inputs plus the log length, fit on the training pairs only: what a reward "
                 "model gets without fine-tuning. A fine-tuned model that does not beat it (paired interval above 0) "
                 "has not shown that its training taught it more than the pretrained features and length.")
    rep.para("Accuracy is the share of pairs where the chosen response gets the higher reward. 'Longer wins' "
             "predicts that the longer response is the chosen one: on judged Japanese sets it is a strong baseline, "
             "and a model that does not clearly beat it may be measuring length. Length-controlled accuracy is the "
             "accuracy on pairs whose chosen response is the shorter one, where 'longer wins' scores 0: a pure length "
             "detector scores 0 there, a model that ignores length keeps its overall accuracy. Length-matched pairs "
             "differ little in length, so neither baseline helps there. The calibration treats sigmoid(r_c - r_r) "
             "as the probability that the chosen response wins (the Bradley-Terry reading); for a model not trained "
             "on pairs it is a reading, not a promise.")
    return rep
