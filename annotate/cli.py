"""``refinery annotate …`` / ``python -m annotate …``: the grading team's commands.

    init | users add NAME --role R | import | review | status | agreement | import-votes | export

Every command takes ``--db URL`` (default ``$REFINERY_DB``, else ``sqlite:///grading.db``:
the embedded store; ``postgresql://…`` for a team sharing one server). Who runs it:
``--user NAME`` (default ``$REFINERY_USER``, else the login name; ``review`` takes
``--annotator``) with the token ``users add`` printed once, from ``--token`` or
``$REFINERY_TOKEN``. ``import``, ``export``, ``agreement``, ``import-votes``, ``users add``
(once a lead exists) and the team's ``status`` need a lead. A problem a user can fix (no store,
a store that cannot be reached, a bad token, a refused vote, a filter that does not parse, an
unusable output) is one line on stderr, passwords masked, and exit status 2.
"""
from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import sys

from sqlalchemy.exc import OperationalError

from annotate.access import AccessError, token_from
from annotate.db import StoreError, default_url
from annotate.store import VoteRefused
from curate.cli_safety import run_command
from curate.config import ConfigError
from curate.expr import ExprError
from curate.groups import GroupError
from curate.layout import OutputError
from curate.s3 import masked


def _store(args):
    from annotate.store import Store

    return Store.open(args.db)


def _login(args, name: str | None = None):
    store = _store(args)
    return store, store.login(name or args.user, token_from(args.token))


def cmd_init(args) -> int:
    from annotate.store import Store

    revision = Store.init(args.db)
    print(f"annotation store {masked(args.db)} at revision {revision}")
    return 0


def cmd_users_add(args) -> int:
    store = _store(args)
    by = store.login(args.user, token_from(args.token)) if store.has_users() else None
    token = store.add_user(by, args.name, args.role)
    print(f"user {args.name} ({args.role}) added. Their token (shown once; give it to them privately):")
    print(token)
    print(f"they run: export REFINERY_TOKEN=<token>; refinery annotate review --annotator {args.name}")
    return 0


def cmd_import(args) -> int:
    from annotate.importer import import_batch

    store, lead = _login(args)
    result = import_batch(store, lead, args.input, args.batch, select=args.select, votes_per_item=args.votes_per_item,
                          tie_policy=args.tie_policy, unsafe_veto=args.unsafe_veto, mode=args.mode, limit=args.limit)
    print(f"batch {result.batch}: {result.items} items imported ({result.undecodable} undecodable, "
          f"{result.without_synthetic} without a synthetic caption left out)")
    return 0


def cmd_review(args) -> int:
    from annotate import image_view  # noqa: F401  (the terminal's graphics are probed before the app starts)
    from annotate.app import ReviewApp

    from annotate.importer import full_image_loader

    store, user = _login(args, args.annotator)
    settings = store.batch_settings(user, args.batch) if args.batch else {}
    mode = args.mode or settings.get("mode", "grade")
    loader = full_image_loader(settings["source_uri"]) if settings.get("source_uri") else None
    ReviewApp(store, user, batch=args.batch, mode=mode, image_mode=args.image_mode, full_image=loader).run()
    return 0


def cmd_status(args) -> int:
    store, user = _login(args)
    print(json.dumps(store.status(user, args.batch), indent=2, default=str))
    return 0


def cmd_agreement(args) -> int:
    from annotate.agreement import summary

    store, lead = _login(args)
    votes = [(row_key, annotator, level) for row_key, _, annotator, level, _, _ in store.votes(lead, args.batch)]
    finals = {f["row_key"]: f["level"] for f in store.finals(lead, args.batch)}
    report = summary(votes, finals, raters_per_item=store.batch_settings(lead, args.batch)["votes_per_item"],
                     max_disagreement=args.max_disagreement, min_votes=args.min_votes)
    print(json.dumps(report, indent=2))
    return 0


def cmd_import_votes(args) -> int:
    store, lead = _login(args)
    stored = refused = 0
    with open(args.csv, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or row[0].strip().lower() == "id" or row[0].startswith("#"):
                continue
            if len(row) < 3:
                print(f"{args.csv}:{n}: expected id, annotator, level[, note]", file=sys.stderr)
                refused += 1
                continue
            try:
                store.import_vote(lead, args.batch, row[0].strip(), row[1].strip(), int(row[2]),
                                  row[3] if len(row) > 3 else None)
                stored += 1
            except (ValueError, StoreError) as err:
                print(f"{args.csv}:{n}: {err}", file=sys.stderr)
                refused += 1
    print(f"{stored} votes stored, {refused} refused")
    return 0 if not refused else 1


def cmd_export(args) -> int:
    from annotate.export import export_batch

    store, lead = _login(args)
    version, graded, before = export_batch(store, lead, args.batch, args.output, args.version)
    state = "already exported (same grades, same files)" if before else "written"
    print(f"grades {version}: {graded} graded rows, {state}: {masked(args.output)}/grades/{version}")
    print(f"read it: curate.open('{masked(args.output)}').read(where='level == 5')")
    return 0


def _parse(argv):
    parser = argparse.ArgumentParser(prog="refinery annotate", description="Grade curated images in a team.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=default_url(), help="store URL (default $REFINERY_DB or sqlite:///grading.db)")
    common.add_argument("--user", default=os.environ.get("REFINERY_USER") or getpass.getuser(), help="who runs the command")
    common.add_argument("--token", help="your token (default $REFINERY_TOKEN)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", parents=[common], help="create or migrate the store").set_defaults(func=cmd_init)
    users = sub.add_parser("users", help="users and roles").add_subparsers(dest="what", required=True)
    p = users.add_parser("add", parents=[common], help="add a user (the first one must be a lead)")
    p.add_argument("name")
    p.add_argument("--role", choices=("annotator", "lead"), required=True)
    p.set_defaults(func=cmd_users_add)
    p = sub.add_parser("import", parents=[common], help="items for a batch from a curated output (lead)")
    p.add_argument("--input", required=True)
    p.add_argument("--batch", required=True)
    p.add_argument("--select", default="keep", help='rows to grade, e.g. "keep and stat_aesthetic >= 5.5"')
    p.add_argument("--votes-per-item", type=int, default=3)
    p.add_argument("--tie-policy", choices=("adjudicate", "median"), default="adjudicate")
    p.add_argument("--unsafe-veto", action="store_true", help="one level-1 (unsafe) vote decides")
    p.add_argument("--mode", choices=("grade", "caption"), default="grade")
    p.add_argument("--limit", type=int)
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("review", parents=[common], help="the review app (a full-screen terminal app)")
    p.add_argument("--annotator", required=True)
    p.add_argument("--batch")
    p.add_argument("--mode", choices=("grade", "caption"), help="default: the batch's mode (grade without --batch)")
    p.add_argument("--image-mode", choices=("kitty", "sixel", "halfblock"), help="default: what the terminal supports")
    p.set_defaults(func=cmd_review)
    p = sub.add_parser("status", parents=[common], help="progress (your own; per batch and annotator for a lead)")
    p.add_argument("--batch")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("agreement", parents=[common], help="Fleiss' kappa, Krippendorff's alpha, confusion (lead)")
    p.add_argument("--batch", required=True)
    p.add_argument("--max-disagreement", type=float, default=0.4, help="flag an annotator above this disagreement rate")
    p.add_argument("--min-votes", type=int, default=20)
    p.set_defaults(func=cmd_agreement)
    p = sub.add_parser("import-votes", parents=[common], help="votes made elsewhere: CSV id, annotator, level[, note] (lead)")
    p.add_argument("--batch", required=True)
    p.add_argument("csv")
    p.set_defaults(func=cmd_import_votes)
    p = sub.add_parser("export", parents=[common], help="the batch's grades as a grades group of the output (lead)")
    p.add_argument("--batch", required=True)
    p.add_argument("--output", required=True, help="the curated output the batch was imported from")
    p.add_argument("--version", help="group version (default: <batch>-<digest of the grades>)")
    p.set_defaults(func=cmd_export)
    return parser.parse_args(argv)


def _reaching_the_store(func):
    """``func`` with a store that cannot be reached (no server, no such database, no folder) as one line."""
    def call(args):
        try:
            return func(args)
        except OperationalError as err:
            first = (str(err.orig).strip() or type(err.orig).__name__).splitlines()[0]
            raise StoreError(f"cannot reach the store {args.db}: {first}") from None
    return call


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    return run_command(_reaching_the_store(args.func), args, (StoreError, AccessError, VoteRefused, ConfigError,
                                                             OutputError, ExprError, GroupError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
