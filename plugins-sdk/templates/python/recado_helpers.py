"""Helpers for recado rules, as the Rust SDK has them: keyword matching that ignores case and accents, the
acknowledgement window, and picking a text by language.

Standard modules are only in the component if something imports them when it is built (componentize-py
snapshots the interpreter after importing `app`): import at the top of a module, not inside a function.

Work on whole strings with `re` and `str` methods rather than character by character: they run as compiled
code, while a Python loop over a 16,000-character message runs out of the call's instruction budget.
"""

import re
import unicodedata

from wit_world.imports.types import Decision


def decision(reason):
    """An empty decision (no opinion on anything) with a reason."""
    return Decision(
        acknowledge=None, queue=None, assignee=None, tags=[], priority=None, escalate=None, reason=reason
    )


_MARKS = re.compile("[\u0300-\u036f]")
_WORD = re.compile(r"[^\W_]+")


def fold(text):
    """Lower-cases `text` and removes accents, so `Urgència`, `URGENCIA` and `urgencia` compare equal."""
    return _MARKS.sub("", unicodedata.normalize("NFKD", text.casefold()))


def words(text):
    """The words of `text`, folded: runs of letters and digits."""
    return _WORD.findall(fold(text))


def contains_any(text, keywords):
    """True if `text` contains one of `keywords` (a word or a phrase) as whole words, ignoring case and accents.

    >>> contains_any("Es URGENTE", ["urgente"]), contains_any("urgentemente", ["urgente"])
    (True, False)
    """
    # Words joined by single spaces, with a space at each end: a phrase is then a substring search.
    joined = " " + " ".join(words(text)) + " "
    return any(" " + " ".join(wanted) + " " in joined for wanted in map(words, keywords) if wanted)


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
