"""``jprefs push dataset|model PATH --repo-id OWNER/NAME``: publish to the Hugging Face Hub.

See :mod:`jprefs.publish.push` for the order of checks; the token comes from ``HF_TOKEN`` or
``hf auth login`` and is never printed.
"""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  # a translated set: Parquet configs pairs / binary / trl-* / rejects and its card; look first
  jprefs push dataset out/hh-ja --repo-id my-team/hh-rlhf-ja --dry-run
  jprefs push dataset out/hh-ja --repo-id my-team/hh-rlhf-ja --private
  # a data split folder (train.jsonl / test.jsonl) or one canonical file
  jprefs push dataset out/split --repo-id my-team/ja-pairs --revision v2
  # a reward model, with a `jprefs eval rm` report in its card
  jprefs push model out/ja-rm --repo-id my-team/ja-rm-e5-small --eval out/eval-rm
  # a reward stack or seed ensemble (train-rm stack=[...] / ensemble_seeds=[...]): the whole folder
  jprefs push model out/ja-debiased-rm --repo-id my-team/ja-rm-debiased-stack
  # an RL policy (jprefs rl output folder)
  jprefs push model runs/ppo --repo-id my-team/ja-ppo-tiny

Refused unless fixed: unknown licences (unless --allow-unknown-license: the card then says so first),
conflicting licences, files holding tokens or keys, pickles, files over --max-file-size.
An --eval report must be of the model pushed (`jprefs eval rm --model` that folder); another's is refused.
A second push of an unchanged folder makes no commit. Load what you pushed (with --revision R, the card's
snippets pass revision="R"):
  datasets.load_dataset("my-team/hh-rlhf-ja", "pairs")      RewardModel.from_pretrained("my-team/ja-rm")"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    sub = parser.add_subparsers(dest="push_kind", metavar="dataset|model")
    for kind, what in (("dataset", "a translate / data split output folder or a canonical JSONL file"),
                       ("model", "a train-rm output folder (reward model, stack or ensemble) or a jprefs rl run folder")):
        p = sub.add_parser(kind, help=f"push {what}", description=f"push {what}", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("path", help=what)
        p.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
        p.add_argument("--private", action="store_true", help="create the repository as private")
        p.add_argument("--revision", default=None, help="branch to push to (created from main if missing)")
        p.add_argument("--dry-run", action="store_true",
                       help="stage and check only: list every file with its size and print the card; no token needed")
        p.add_argument("--allow-unknown-license", action="store_true",
                       help="publish parts whose licence is unknown (the card says so in its first lines)")
        p.add_argument("--allow-secrets", action="store_true",
                       help="publish strings that only look like keys (never the push token itself)")
        p.add_argument("--max-file-size", default="5GiB", help="refuse larger files (default 5GiB)")
        p.add_argument("--message", default="", help="commit message")
        p.add_argument("--no-card", action="store_true", help="with --dry-run: do not print the card")
        if kind == "dataset":
            p.add_argument("--name", default="", help="pretty name in the card (default: the repo name)")
        else:
            p.add_argument("--eval", action="append", default=[], metavar="DIR",
                           help="a `jprefs eval rm` output folder of THIS model whose report goes in the card "
                                "(repeatable); a report of another model is refused")
            p.add_argument("--allow-unverified-eval", action="store_true",
                           help="take an --eval report whose model cannot be checked to be this one (moved since, "
                                "a Hub id, an older report); the card says it is unverified")


def run(args) -> int:
    from jprefs.errors import ConfigError, JprefsError
    from jprefs.publish.push import parse_size, push, report

    if not getattr(args, "push_kind", None):
        raise ConfigError("say what to push\n  fix: jprefs push dataset PATH --repo-id OWNER/NAME, or "
                          "jprefs push model DIR --repo-id OWNER/NAME (jprefs push --help shows examples)")
    try:
        res = push(args.push_kind, args.path, args.repo_id, private=args.private, revision=args.revision,
                   dry_run=args.dry_run, allow_unknown_license=args.allow_unknown_license,
                   allow_secrets=args.allow_secrets, max_file_bytes=parse_size(args.max_file_size),
                   commit_message=args.message, eval_dirs=getattr(args, "eval", None),
                   pretty_name=getattr(args, "name", ""),
                   allow_unverified_eval=getattr(args, "allow_unverified_eval", False))
    except JprefsError:
        raise
    except Exception as e:  # noqa: BLE001 - the Hub's HTTP errors become one line with the fix
        raise _hub_error(e, args) from None
    print(report(res, show_card=not args.no_card))
    return 0


def _hub_error(e: Exception, args) -> Exception:
    from jprefs.errors import JprefsError

    name = type(e).__name__
    status = getattr(getattr(e, "response", None), "status_code", None)
    first = str(e).splitlines()[0] if str(e) else name
    if status in (401, 403):
        fix = ("the token is missing, invalid or lacks write access to this namespace: set HF_TOKEN to a write token "
               "(https://huggingface.co/settings/tokens) or run `hf auth login`")
    elif status == 404 or name in ("RepositoryNotFoundError", "RevisionNotFoundError"):
        fix = f"check --repo-id {args.repo_id} (and --revision); the namespace must be yours or an org you write to"
    elif name in ("ConnectError", "ConnectionError", "ConnectTimeout", "OfflineModeIsEnabled"):
        fix = "the Hub cannot be reached (no network, or HF_HUB_OFFLINE=1); --dry-run works offline"
    else:
        return e
    from jprefs.redact import redact_url

    return JprefsError(f"the Hub refused the push of {args.repo_id}: {name}: {redact_url(first)}\n  fix: {fix}")
