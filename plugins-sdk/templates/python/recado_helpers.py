"""Helpers for recado rules, as the Rust SDK has them: keyword matching that ignores case and accents, the
acknowledgement window, and picking a text by language.

Standard modules are only in the component if something imports them when it is built (componentize-py
snapshots the interpreter after importing `app`): import at the top of a module, not inside a function.
"""

import unicodedata

from wit_world.imports.types import Decision


def decision(reason):
    """An empty decision (no opinion on anything) with a reason."""
    return Decision(
        acknowledge=None, queue=None, assignee=None, tags=[], priority=None, escalate=None, reason=reason
    )


def fold(text):
    """Lower-cases `text` and removes accents, so `Urgència`, `URGENCIA` and `urgencia` compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text):
    """The words of `text`, folded: runs of letters and digits."""
    folded = fold(text)
    current, found = [], []
    for c in folded:
        if c.isalnum():
            current.append(c)
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return found


def contains_any(text, keywords):
    """True if `text` contains one of `keywords` (a word or a phrase) as whole words, ignoring case and accents.

    >>> contains_any("Es URGENTE", ["urgente"]), contains_any("urgentemente", ["urgente"])
    (True, False)
    """
    tokens = words(text)
    for keyword in keywords:
        wanted = words(keyword)
        n = len(wanted)
        if n and any(tokens[i : i + n] == wanted for i in range(len(tokens) - n + 1)):
            return True
    return False


def acknowledged_within(ctx, minutes):
    """True if the conversation got an automatic acknowledgement within the last `minutes`."""
    at = ctx.last_acknowledged_at
    return at is not None and ctx.now - at < minutes * 60_000


def pick_text(texts, language, languages):
    """The text for `language`, else the client's first language, else any."""
    for candidate in [language] + list(languages[:1]):
        if candidate and candidate in texts:
            return texts[candidate]
    return next(iter(texts.values()), None)
