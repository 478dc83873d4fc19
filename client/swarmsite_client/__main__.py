"""`python -m swarmsite_client tail`: the event stream, one line per event."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from swarmsite_client.client import Client
from swarmsite_client.errors import StreamClosed


def describe(event: dict) -> str:
    """One readable line: position, time, kind, who, what it concerns."""
    payload = event.get("payload") or {}
    actor = event.get("actor") or {}
    when = str(event.get("occurred_at") or "")[:23].replace("T", " ")
    parts = [f"{event.get('position', '?'):>8}", when, f"{event.get('kind', '?'):<24}"]
    if actor.get("label") or actor.get("type"):
        parts.append(f"by {actor.get('label') or actor.get('type')}")
    if event.get("task"):
        parts.append(f"task={str(event['task'])[:8]}")
    if event.get("conversation"):
        parts.append(f"conv={str(event['conversation'])[:8]}")
    if "from" in payload and "to" in payload:
        parts.append(f"{payload['from']} -> {payload['to']}")
    else:
        brief = {
            k: v
            for k, v in payload.items()
            if k not in ("task", "conversation") and not isinstance(v, dict | list)
        }
        if brief:
            text = json.dumps(brief, ensure_ascii=False, default=str)
            parts.append(text if len(text) <= 120 else text[:117] + "...")
    return "  ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarmsite_client")
    commands = parser.add_subparsers(dest="command", required=True)
    tail = commands.add_parser("tail", help="print the event stream, live")
    tail.add_argument("--url", help="server (default $SWARMSITE_URL)")
    tail.add_argument("--api-key", help="key (default $SWARMSITE_API_KEY)")
    tail.add_argument(
        "--after",
        type=int,
        default=None,
        help="start after this position (0: the whole log; default: live only)",
    )
    tail.add_argument("--task", action="append", help="a task id (repeatable)")
    tail.add_argument("--conversation", action="append", help="a conversation id")
    tail.add_argument("--kind", action="append", help="an event kind (repeatable)")
    tail.add_argument("--json", action="store_true", help="print raw JSON lines")
    args = parser.parse_args(argv)

    client = Client(args.url, args.api_key)
    try:
        for event in client.events.follow(
            after=args.after,
            task=args.task,
            conversation=args.conversation,
            kind=args.kind,
        ):
            line = json.dumps(event, default=str) if args.json else describe(event)
            print(line, flush=True)
    except StreamClosed as exc:
        print(f"swarmsite: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
