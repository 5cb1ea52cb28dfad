"""The template's rules: acknowledge in the customer's language, route by keywords, escalate urgent messages
and conversations left waiting. Edit freely; `config.json` holds the texts and words, so one build serves
many businesses.

recado calls `on_message` for each customer message and `on_overdue` when a conversation waits past its
first-response target. Everything a rule needs arrives as arguments: time is `ctx.now`, never a clock, so the
same message always gets the same decision (that is what lets recado replay a new version over past messages).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Decision, Escalation, LogLevel, Priority

from recado_helpers import acknowledged_within, contains_any, decision, pick_text


def _config(ctx):
    try:
        return json.loads(ctx.config)
    except ValueError as error:
        # An error result is recorded with the decision, and the business's defaults apply.
        raise Err(f"invalid plugin configuration: {error}")


def acknowledgement(config, language, ctx):
    """The acknowledgement text and which one it is: `open`, `closed_until` with the next opening filled in
    (on the client's clock: `ctx.local` is worked out by recado, no time-zone database needed), or `closed`."""
    texts = config.get("acknowledge", {})
    local = ctx.local
    if local.open:
        return pick_text(texts.get("open", {}), language, ctx.languages), "open"
    opening = local.next_opening
    until = pick_text(texts.get("closed_until", {}), language, ctx.languages)
    if opening is not None and until is not None:
        days = pick_text(config.get("weekdays", {}), language, ctx.languages) or []
        day = days[opening.weekday - 1] if len(days) == 7 else str(opening.weekday)
        time = f"{opening.minute_of_day // 60:02}:{opening.minute_of_day % 60:02}"
        return until.replace("{day}", day).replace("{time}", time), "closed_until"
    return pick_text(texts.get("closed") or texts.get("open", {}), language, ctx.languages), "closed"


class WitWorld(wit_world.WitWorld):
    def on_message(self, msg, contact, ctx) -> Decision:
        config = _config(ctx)
        result = decision("")
        reasons = []

        repeat = config.get("repeat_after_minutes", 120)
        if acknowledged_within(ctx, repeat):
            reasons.append(f"acknowledged less than {repeat} minutes ago")
        else:
            text, which = acknowledgement(config, msg.language, ctx)
            if text is not None:
                result.acknowledge = text
                reasons.append(f"{which}: acknowledge")

        for route in config.get("routes", []):
            if contains_any(msg.text, route["keywords"]):
                result.queue = route["queue"]
                reasons.append(f"keywords of {route['queue']}")
                break

        if contains_any(msg.text, config.get("urgent_keywords", [])):
            level = config.get("urgent_level", 2)
            result.priority = Priority.URGENT
            result.tags.append("urgent")
            result.escalate = Escalation(level=level, reason="urgent words in the message", notify_owner=level >= 2)
            reasons.append("urgent words")

        result.reason = "; ".join(reasons) or "nothing to do"
        host.log(LogLevel.DEBUG, result.reason)
        return result

    def on_overdue(self, ctx, waited_seconds) -> Decision:
        config = _config(ctx)
        minutes = waited_seconds // 60
        result = decision(f"waited {minutes} business minutes for a first reply")
        result.tags.append("overdue")
        result.escalate = Escalation(
            level=config.get("overdue_level", 1), reason=f"no reply after {minutes} minutes", notify_owner=False
        )
        return result
