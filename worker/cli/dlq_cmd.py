"""`leadsync dlq list|show|replay|purge`: look at dead letters, send them again, or drop them."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from worker.account import Account
from worker.base.errors import InvalidLeadError, RedisUnavailableError
from worker.base.redaction import redact_email, redact_phone
from worker.cli.exit_codes import ExitCode
from worker.ledger.deadletter import DeadLetter, DeadLetters, UnknownDeadLetterError

EXAMPLES = """examples:
  leadsync dlq list                              # the oldest 100 dead letters, and the total
  leadsync dlq list --offset 100 --limit 500     # the next ones (--limit 0: all of them)
  leadsync dlq list --reason http_400 --older-than 2h
  leadsync dlq show ld_3f9a...                   # one letter, personal data masked
  leadsync dlq show ld_3f9a... --reveal          # the lead as received, in clear
  leadsync dlq replay ld_3f9a...                 # back onto the queue, same lead_id
  leadsync dlq replay --all --reason retries_exhausted
  leadsync dlq purge --all --older-than 30d --yes
"""
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def age_s(text: str) -> float:
    """'90', '90s', '15m', '2h', '7d' as seconds."""
    match = _AGE.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (use e.g. 90s, 15m, 2h, 7d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", help="only this reason code (see `dlq list`)")
    parser.add_argument("--older-than", type=age_s, metavar="AGE", help="dead for at least AGE")
    parser.add_argument("--newer-than", type=age_s, metavar="AGE", help="dead for at most AGE")


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return int(text)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dlq", help="dead letters: list, show, replay, purge",
        description="Dead-lettered leads keep the lead, the reason (redacted), attempts, last "
        "status and times. Replay keeps the lead_id and re-enters the normal path.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="dead letters, oldest first, a page at a time")
    _filters(listing)
    listing.add_argument("--limit", type=_count, default=100, metavar="N",
                         help="show at most N letters (default 100; 0 for all)")
    listing.add_argument("--offset", type=_count, default=0, metavar="N",
                         help="skip the first N matching letters (the next page)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=run_list)
    show = sub.add_parser("show", help="one dead letter")
    show.add_argument("lead_id")
    show.add_argument("--reveal", action="store_true",
                      help="print the lead as received, personal data in clear")
    show.set_defaults(handler=run_show)
    for name, handler, text in (("replay", run_replay, "put dead letters back on the queue"),
                                ("purge", run_purge, "delete dead letters for good")):
        action = sub.add_parser(name, help=text)
        action.add_argument("lead_ids", nargs="*", metavar="LEAD_ID")
        action.add_argument("--all", action="store_true", help="every letter the filters match")
        _filters(action)
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="do not ask")
        action.set_defaults(handler=handler)


def _store() -> DeadLetters:
    return Account.load().dead_letters


def _guard_redis(fn: Any) -> Any:
    from redis.exceptions import RedisError

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except RedisError as exc:
            raise RedisUnavailableError(f"Redis unavailable: {type(exc).__name__}") from None
    return wrapped


def _select(store: DeadLetters, args: argparse.Namespace) -> list[DeadLetter]:
    return store.select(reason=args.reason, older_than_s=args.older_than,
                      newer_than_s=args.newer_than)


def _summary(letter: DeadLetter, now: float) -> dict[str, Any]:
    return {"lead_id": letter.lead_id, "reason_code": letter.reason_code,
            "reason": letter.reason, "attempts": letter.attempts,
            "last_status": letter.last_status, "dead_at": letter.dead_at,
            "age_s": round(now - letter.dead_at, 1), "replayable": letter.replayable}


def _masked(value: Any) -> Any:
    """The lead with email and phone masked (the default view)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "email" and isinstance(item, str):
                out[key] = redact_email(item)
            elif key == "phone" and isinstance(item, str):
                out[key] = redact_phone(item)
            else:
                out[key] = _masked(item)
        return out
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "..."
    return value


@_guard_redis
def run_list(args: argparse.Namespace) -> int:
    now = time.time()
    page = _store().page(reason=args.reason, older_than_s=args.older_than,
                         newer_than_s=args.newer_than, now=now, offset=args.offset,
                         limit=args.limit or None)
    letters = page.letters
    if args.json:
        for letter in letters:
            print(json.dumps(_summary(letter, now)))
        return int(ExitCode.OK)
    if not letters:
        filtered = args.reason or args.older_than or args.newer_than
        print("no dead letters" + (" match" if filtered else "")
              + (f" after the first {args.offset}" if args.offset and page.total else ""))
        return int(ExitCode.OK)
    print(f"{'LEAD_ID':<40} {'REASON':<18} {'TRIES':>5} {'STATUS':>6} {'AGE':>8}  MESSAGE")
    for letter in letters:
        age = _human_age(now - letter.dead_at)
        print(f"{letter.lead_id:<40} {letter.reason_code:<18} {letter.attempts:>5} "
              f"{letter.last_status or '-':>6} {age:>8}  {letter.reason[:80]}")
    print(_footer(args, len(letters), page.total))
    return int(ExitCode.OK)


def _footer(args: argparse.Namespace, shown: int, total: int | None) -> str:
    first, last = args.offset + 1, args.offset + shown
    where = f"{first}-{last}" if args.offset else f"{shown}"
    if total is not None:
        more = f"; next: --offset {last}" if last < total else ""
        return f"{where} of {total} dead letter(s){more}"
    more = f"; more may match: --offset {last}" if args.limit and shown == args.limit else ""
    return f"{where} dead letter(s) shown{more}"


@_guard_redis
def run_show(args: argparse.Namespace) -> int:
    try:
        letter = _store().get(args.lead_id)
    except UnknownDeadLetterError:
        print(f"leadsync: no dead letter {args.lead_id!r}", file=sys.stderr)
        return int(ExitCode.FAILURE)
    data = _summary(letter, time.time())
    data["first_seen"] = letter.first_seen
    data["lead"] = letter.lead if args.reveal else _masked(letter.lead)
    print(json.dumps(data, indent=2, default=str))
    return int(ExitCode.OK)


def _chosen(store: DeadLetters, args: argparse.Namespace) -> list[DeadLetter] | None:
    if args.all == bool(args.lead_ids):
        print("leadsync: name LEAD_IDs or use --all (with optional filters)", file=sys.stderr)
        return None
    if args.all:
        return _select(store, args)
    letters = []
    for lead_id in args.lead_ids:
        try:
            letters.append(store.get(lead_id))
        except UnknownDeadLetterError:
            print(f"leadsync: no dead letter {lead_id!r}", file=sys.stderr)
            return None
    return letters


@_guard_redis
def run_replay(args: argparse.Namespace) -> int:
    store = _store()
    letters = _chosen(store, args)
    if letters is None:
        return int(ExitCode.USAGE)
    replayed, refused = 0, 0
    for letter in letters:
        try:
            store.replay(letter.lead_id)
            replayed += 1
        except (ValueError, InvalidLeadError, UnknownDeadLetterError) as exc:
            refused += 1
            print(f"leadsync: {letter.lead_id}: not replayed: {exc}", file=sys.stderr)
    print(f"replayed {replayed}, refused {refused}")
    return int(ExitCode.OK if refused == 0 else ExitCode.FAILURE)


@_guard_redis
def run_purge(args: argparse.Namespace) -> int:
    store = _store()
    letters = _chosen(store, args)
    if letters is None:
        return int(ExitCode.USAGE)
    if not args.yes and sys.stdin.isatty():
        answer = input(f"delete {len(letters)} dead letter(s) for good? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return int(ExitCode.OK)
    elif not args.yes:
        print("leadsync: purge needs --yes when not run from a terminal", file=sys.stderr)
        return int(ExitCode.USAGE)
    print(f"purged {store.purge(letters)}")
    return int(ExitCode.OK)


def _human_age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
