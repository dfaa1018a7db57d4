"""`leadsync demo`: run the whole product locally, show progress, print a summary, clean up."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from worker.base.errors import LeadsyncError
from worker.cli.exit_codes import ExitCode
from worker.demo.demo import Demo, DemoConfig, TaskTracker

EXAMPLES = """examples:
  leadsync demo                      # 150 sample leads, about a minute, nothing left running
  leadsync demo --leads 40           # shorter
  leadsync demo --keep-running       # then explore Flower and the sandbox; Ctrl-C stops all
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="the whole product on this machine in about a minute",
        description="Start an embedded Redis, the sandbox (rotating refresh tokens, short-lived "
        "access tokens), authorize with the device flow, run a real worker and beat, deliver "
        "sample leads (some invalid, some duplicates), print a summary and stop everything.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=150, metavar="N",
                        help="sample leads to enqueue (default 150: about 40 s at 4 requests/s)")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave Flower, the sandbox, worker and beat up; Ctrl-C stops all")
    parser.add_argument("--access-token-lifetime-s", type=float, default=20.0, metavar="S",
                        help="sandbox access-token lifetime (default 20: several refreshes)")
    parser.add_argument("--rate-limit-per-s", type=float, default=4.0, metavar="R",
                        help="sandbox API rate limit (default 4, Constant Contact's own)")
    parser.add_argument("--timeout", type=float, default=240.0, metavar="S",
                        help="give up when delivery takes longer (default 240)")
    parser.add_argument("--summary-json", type=Path, metavar="FILE",
                        help="also write the summary as JSON (for scripts and tests)")
    parser.set_defaults(handler=run)


def _say(text: str) -> None:
    print(text, flush=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    if args.leads < 1:
        print("leadsync: --leads must be at least 1", file=sys.stderr)
        return int(ExitCode.USAGE)
    config = DemoConfig(leads=args.leads, keep_running=args.keep_running,
                        access_token_lifetime_s=args.access_token_lifetime_s,
                        rate_limit_per_s=args.rate_limit_per_s, timeout_s=args.timeout)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # TERM cleans up like Ctrl-C
    demo = Demo(config, say=_say)
    ok = False
    try:
        summary = _run(demo, config)
        print(render_summary(summary), flush=True)
        if args.summary_json:
            args.summary_json.write_text(json.dumps(summary, indent=2, default=str))
        ok = summary["processed"] == summary["enqueued"]
        if config.keep_running:
            _explore(demo)
    finally:
        demo.close()
        signal.signal(signal.SIGTERM, previous)
        if ok and not config.keep_running:
            demo.remove_workdir()
        elif not ok:
            print(f"logs kept in {demo.workdir}", file=sys.stderr)
    _say("stopped    worker, beat, sandbox and Redis are down; nothing left running")
    return int(ExitCode.OK if ok else ExitCode.FAILURE)


def _run(demo: Demo, config: DemoConfig) -> dict[str, Any]:
    from worker.celery import make_app

    demo.start()
    tracker = TaskTracker(make_app(demo.settings))
    tracker.start()
    if not tracker.ready.wait(15):
        raise LeadsyncError("could not subscribe to the worker's task events")
    if config.keep_running:
        _say(f"flower     {demo.start_flower()}")
    report = demo.enqueue()
    rejected = f", {report.rejected_count} refused as invalid" if report.rejected else ""
    _say(f"enqueue    {report.enqueued} leads queued through worker.leads.enqueue{rejected}")
    try:
        _wait(demo, tracker, report.enqueued, config.timeout_s)
    finally:
        tracker.stop()
    return collect_summary(demo, tracker)


def _wait(demo: Demo, tracker: TaskTracker, total: int, timeout_s: float) -> None:
    """Progress bar until every queued message was processed by the worker and the token was
    refreshed at least once (the demo exists to show both)."""
    start = time.monotonic()
    tty = sys.stdout.isatty()
    last_line = -1.0
    while True:
        done = tracker.done()
        elapsed = time.monotonic() - start
        finished_now = done >= total and not demo.state.delivery_done_at
        if tty or elapsed - last_line >= 5 or finished_now:
            _progress(done, total, elapsed, demo, end="\r" if tty and done < total else "\n")
            last_line = elapsed
        if finished_now:
            demo.state.delivery_done_at = time.monotonic()
        if done >= total and int(_token(demo).get("refresh_count") or 0) >= 1:
            return
        demo.check_children()
        if elapsed > timeout_s:
            raise LeadsyncError(f"only {done} of {total} leads processed in {timeout_s:g} s")
        time.sleep(0.25)


def _progress(done: int, total: int, elapsed: float, demo: Demo, end: str) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    token = _token(demo)
    bar = "█" * filled + "░" * (width - filled)
    print(f"delivering [{bar}] {done:>4}/{total} leads  {elapsed:5.1f} s  "
          f"token generation {token.get('generation', '-')}", end=end, flush=True)


def _token(demo: Demo) -> dict[str, Any]:
    from worker.auth.status import token_status

    try:
        return token_status(demo.account.tokens)
    except LeadsyncError:
        return {}


def _sandbox_stats(demo: Demo) -> dict[str, Any]:
    """What the sandbox received (`/_sandbox/stats`), or {} when it cannot say."""
    try:
        with urllib.request.urlopen(f"{demo.sandbox.url}/_sandbox/stats", timeout=5) as answer:
            data: dict[str, Any] = json.loads(answer.read())
            return data
    except (OSError, ValueError):
        return {}


def collect_summary(demo: Demo, tracker: TaskTracker) -> dict[str, Any]:
    """The numbers the summary table shows, from the enqueue report, Celery's events, the
    token record, delivery's lead counts and what the sandbox itself received."""
    from worker.report.status import gather_status

    report = demo.state.report
    assert report is not None
    elapsed = demo.state.delivery_done_at - demo.state.delivery_started_at
    status = gather_status(demo.account)
    sandbox = _sandbox_stats(demo)
    mix = demo.state.mix
    return {
        "leads_sampled": report.total,
        "enqueued": report.enqueued,
        "rejected_at_enqueue": report.rejected_count,
        "rejection_reasons": sorted({r.reason for r in report.rejected}),
        "processed": tracker.done(),
        "retried": tracker.retried,
        "expected": {"distinct_valid": mix.valid_unique, "duplicates": mix.duplicates,
                     "updates": mix.updates, "unknown_list": mix.invalid_unknown_list},
        "leads": status["leads"],
        "sandbox": sandbox,
        "refreshes": status["token"].get("refresh_count", 0),
        "token_generation": status["token"].get("generation"),
        "delivery_seconds": round(elapsed, 1),
        "total_seconds": round(time.monotonic() - demo.state.started_at, 1),
        "rate_limit_per_s": demo.config.rate_limit_per_s,
    }


def render_summary(summary: dict[str, Any]) -> str:
    """The table a person reads: what went in, where every lead ended, what the API saw."""
    leads, sandbox = summary["leads"], summary["sandbox"]
    expected = summary["expected"]
    seconds = summary["delivery_seconds"] or 1.0
    limit = summary["rate_limit_per_s"]
    api_requests = int(sandbox.get("api_requests", leads.get("requests_today", 0)))
    throttled = sandbox.get("throttled_429", {})
    dead = leads.get("dead_letters_by_reason") or {}
    rows: list[tuple[str, str]] = [
        ("sample leads", str(summary["leads_sampled"])),
        ("refused at enqueue", f"{summary['rejected_at_enqueue']} "
                               f"({'; '.join(summary['rejection_reasons']) or '-'})"),
        ("queued / processed", f"{summary['enqueued']} / {summary['processed']} "
                               f"({summary['retried']} retries, {expected['duplicates']} "
                               "exact re-sends skipped)"),
        ("delivered", f"{leads.get('delivered_total', 0)} of {expected['distinct_valid']} "
                      "distinct valid leads"),
        ("created / updated", f"{leads.get('created_total', 0)} / "
                              f"{leads.get('updated_total', 0)}"),
        ("dead-lettered", f"{leads.get('dead_letters', 0)} "
                          f"({', '.join(f'{k}: {v}' for k, v in dead.items()) or '-'})"),
        ("parked", f"{leads.get('parked_reauth', 0)} re-authorization, "
                   f"{leads.get('parked_quota', 0)} quota"),
        ("contacts in sandbox", str(sandbox.get("contacts", {}).get("count", "?"))),
        ("API requests", f"{api_requests} ({throttled.get('throttled', 0)} answered 429 "
                         f"throttled, {sandbox.get('unauthorized_401', 0)} answered 401)"),
        ("rate used", f"{api_requests / seconds:.2f} requests/s of the sandbox's {limit:g}/s "
                      f"({100 * api_requests / seconds / limit:.0f} %)"),
        ("token refreshes", f"{summary['refreshes']} (generation {summary['token_generation']}, "
                            f"{sandbox.get('invalid_grant', 0)} invalid_grant)"),
        ("delivery time", f"{summary['delivery_seconds']} s (whole demo "
                          f"{summary['total_seconds']} s)"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = ["", "summary", "-" * (width + 40)]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def _explore(demo: Demo) -> None:
    _say(f"\nstill running: sandbox {demo.sandbox.url}  flower {demo.state.flower_url}  "
         f"redis {demo.settings.redis_url}")
    _say("press Ctrl-C to stop everything")
    try:
        while True:
            demo.check_children()
            time.sleep(1)
    except KeyboardInterrupt:
        _say("")
