"""The lead on the wire: the plain-JSON Celery (protocol 2) message, built and read in one place.

Any Redis client can `LPUSH leads <message>`: kombu takes a body without `body_encoding` as
plain text, so there is no base64 and no Celery library on the producer side (field notes).
`leadsync.sync_lead` receives the lead as its one positional argument; `lead_from_task_args`
turns whatever arrived into a `Lead` or an `InvalidLeadError` (never a crash).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as json_string  # C: str -> JSON string literal
from typing import Any

from worker.base.errors import InvalidLeadError
from worker.base.names import LEADS_QUEUE, SYNC_LEAD
from worker.base.priority import list_for, priority_for
from worker.base.redaction import fingerprint, redact_email
from worker.leads.lead import Lead, parse_lead

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_EMBED_JSON = json.dumps(EMBED, separators=(",", ":"))


def redacted_lead_repr(value: object) -> str:
    """What Flower and worker logs may show of one argument: ids, never personal data."""
    if isinstance(value, Lead):
        lead: Lead | None = value
    elif isinstance(value, Mapping):
        try:
            lead = parse_lead(dict(value))
        except InvalidLeadError:
            lead = None
        if lead is None:
            given = value.get("lead_id")
            shown = repr(given) if isinstance(given, str) and len(given) <= 128 else None
            return f"{{'lead_id': {shown}, 'invalid': True}}"
    else:
        return f"<{type(value).__name__}>"
    assert lead is not None
    return _lead_repr(lead)


def _lead_repr(lead: Lead) -> str:
    """A validated lead as Flower and the logs see it: its id, the masked email, the source."""
    return _shown(lead.lead_id, lead.email, lead.source)


def _shown(lead_id: str, email: str, source: str | None) -> str:
    """The repr of {'lead_id': …, 'email': masked[, 'source': …]}, written directly."""
    if source:
        return f"{{'lead_id': {lead_id!r}, 'email': {redact_email(email)!r}, 'source': {source!r}}}"
    return f"{{'lead_id': {lead_id!r}, 'email': {redact_email(email)!r}}}"


def lead_argsrepr(lead_id: str, email: str, source: str | None) -> str:
    """`redacted_argsrepr([lead])` of a valid lead, from the values it shows."""
    return f"({_shown(lead_id, email, source)},)"


def redacted_argsrepr(args: Sequence[object]) -> str:
    """Celery's `argsrepr` header (a tuple repr) with every lead redacted."""
    inner = ", ".join(redacted_lead_repr(arg) for arg in args)
    return f"({inner},)" if len(args) == 1 else f"({inner})"


def redacted_kwargsrepr(kwargs: Mapping[str, object]) -> str:
    """Keyword arguments are not part of the contract: show names and a fingerprint only."""
    shown = (f"{key!r}: <{fingerprint(repr(value))}>" for key, value in kwargs.items())
    return "{" + ", ".join(shown) + "}"


def build_task_message(task: str, queue: str, args: Sequence[object] = (),
                       kwargs: Mapping[str, object] | None = None, *, task_id: str | None = None,
                       argsrepr: str | None = None, kwargsrepr: str | None = None,
                       priority: int = 0) -> dict[str, Any]:
    """A plain-JSON protocol-2 message for any task on any queue, as a dict.

    What a Celery producer would send, without a Celery app: the worker reads it as it reads
    `send_task`'s. `argsrepr`/`kwargsrepr` (what Flower and logs show) default to the redacted
    forms; pass plain reprs only for arguments that carry no personal data or secret.
    """
    task_id = task_id or str(uuid.uuid4())
    kwargs = dict(kwargs or {})
    body = json.dumps([list(args), kwargs, EMBED], separators=(",", ":"))
    return {
        "body": body,
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "retries": 0,
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": redacted_argsrepr(args) if argsrepr is None else argsrepr,
            "kwargsrepr": redacted_kwargsrepr(kwargs) if kwargsrepr is None else kwargsrepr,
        },
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "correlation_id": task_id,
            "delivery_mode": 2,
            "priority": priority,
            "delivery_info": {"exchange": "", "routing_key": queue},
        },
    }


def encode_task_message(task: str, queue: str, args: Sequence[object] = (),
                        kwargs: Mapping[str, object] | None = None, *,
                        task_id: str | None = None, argsrepr: str | None = None,
                        kwargsrepr: str | None = None) -> str:
    """`build_task_message` as the JSON text to LPUSH onto the list named `queue`."""
    return json.dumps(build_task_message(task, queue, args, kwargs, task_id=task_id,
                                         argsrepr=argsrepr, kwargsrepr=kwargsrepr),
                      separators=(",", ":"))


def build_message(lead: Lead, *, task_id: str | None = None) -> dict[str, Any]:
    """The exact message a raw producer would LPUSH (docs/architecture.md), at the lead's
    priority (worker/base/priority.py): 0 with consent, the backlog's without."""
    return build_task_message(SYNC_LEAD, LEADS_QUEUE, [lead.to_json_dict()], task_id=task_id,
                              argsrepr=redacted_argsrepr([lead]), kwargsrepr="{}",
                              priority=priority_for(lead.consent))


def queue_list(lead: Lead) -> str:
    """The Redis list `encode_message(lead)` is pushed onto (the list of its priority)."""
    return list_for(LEADS_QUEUE, priority_for(lead.consent))


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 4122 bits


def random_id_pairs(count: int) -> list[tuple[str, str]]:
    """`count` pairs of random version-4 UUID strings (task id, delivery tag), one urandom read.

    The text `str(uuid.UUID(bytes=random, version=4))` gives, without building the objects.
    Drawn per call, never kept: a forked process cannot repeat its parent's ids.
    """
    h = os.urandom(32 * count).hex()
    pairs = []
    for start in range(0, 64 * count, 64):
        u, v = _VARIANT, h[start:start + 64]
        pairs.append((f"{v[:8]}-{v[8:12]}-4{v[13:16]}-{u[v[16]]}{v[17:20]}-{v[20:32]}",
                      f"{v[32:40]}-{v[40:44]}-4{v[45:48]}-{u[v[48]]}{v[49:52]}-{v[52:]}"))
    return pairs


def _two_uuid4() -> tuple[str, str]:
    """One pair of `random_id_pairs`."""
    return random_id_pairs(1)[0]


def _lead_argsrepr(lead: Lead) -> str:
    """`redacted_argsrepr([lead])` for a validated lead, without the generic path's checks."""
    return f"({_lead_repr(lead)},)"


def encode_message(lead: Lead, *, task_id: str | None = None) -> str:
    """`build_message` as the JSON text to push (decodes to its dict: tested)."""
    random_id, delivery_tag = _two_uuid4()
    return lead_message(lead.model_dump_json(), _lead_argsrepr(lead), task_id or random_id,
                        delivery_tag, priority=priority_for(lead.consent))


def lead_message(lead_json: str, argsrepr: str, task_id: str, delivery_tag: str, *,
                 queue: str = LEADS_QUEUE, priority: int = 0) -> str:
    """The one template of a lead's message: the lead's JSON text in its envelope.

    Producers push thousands a second: the lead is serialized once (`Lead.model_dump_json()`
    or lead_fast's equal text) and the envelope, whose other parts are ids and constants, is
    filled in around it instead of building a dict and encoding it twice. `queue` (the routing
    key) and `priority` are the only parts that vary by where the lead is going.
    """
    task = json_string(task_id)  # a UUID needs no escaping; any other id is escaped
    body = f"[[{lead_json}],{{}},{_EMBED_JSON}]"
    return (
        f'{{"body":{json_string(body)},"content-type":"application/json",'
        f'"content-encoding":"utf-8","headers":{{"lang":"py","task":"{SYNC_LEAD}",'
        f'"id":{task},"retries":0,"root_id":{task},"parent_id":null,'
        f'"argsrepr":{json_string(argsrepr)},"kwargsrepr":"{{}}"}},'
        f'"properties":{{"delivery_tag":"{delivery_tag}","correlation_id":{task},'
        f'"delivery_mode":2,"priority":{int(priority)},'
        f'"delivery_info":{{"exchange":"","routing_key":{json_string(queue)}}}}}}}'
    )


def lead_from_task_args(args: Sequence[object], kwargs: Mapping[str, object]) -> Lead:
    """The lead from `sync_lead(*args, **kwargs)`; InvalidLeadError for anything else.

    The task should accept `*args, **kwargs` and call this, so a message with the wrong
    arguments becomes a dead letter with a reason instead of a TypeError inside Celery.
    """
    if kwargs:
        names = ", ".join(sorted(str(key) for key in kwargs)[:5])
        raise InvalidLeadError(f"unexpected keyword arguments for {SYNC_LEAD}: {names}")
    if len(args) != 1:
        raise InvalidLeadError(
            f"{SYNC_LEAD} takes exactly one positional argument (the lead), got {len(args)}"
        )
    return parse_lead(args[0])


def parse_message(raw: bytes | str) -> Lead:
    """Read a raw list entry (inspection, tests, dead-letter tooling) down to its lead."""
    try:
        message = json.loads(raw)
    except RecursionError:
        raise InvalidLeadError("message is nested too deeply") from None
    except ValueError:
        raise InvalidLeadError("message is not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("body"), str):
        raise InvalidLeadError("message has no JSON text body")
    properties = message.get("properties")
    headers = message.get("headers")
    if not isinstance(properties, dict) or not isinstance(headers, dict):
        raise InvalidLeadError("message needs `headers` and `properties` objects")
    if properties.get("body_encoding") not in (None, "utf-8"):
        raise InvalidLeadError("message body is encoded; plain JSON expected")
    if headers.get("task") != SYNC_LEAD:
        raise InvalidLeadError(f"message is not for {SYNC_LEAD}")
    try:
        body = json.loads(message["body"])
    except RecursionError:
        raise InvalidLeadError("message body is nested too deeply") from None
    except ValueError:
        raise InvalidLeadError("message body is not valid JSON") from None
    if not isinstance(body, list) or len(body) < 2:
        raise InvalidLeadError("message body is not [args, kwargs, embed]")
    args, kwargs = body[0], body[1]
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidLeadError("message body is not [args, kwargs, embed]")
    return lead_from_task_args(args, kwargs)
