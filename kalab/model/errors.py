"""The one exception users see: its message is a single sentence saying what is wrong and how to fix it."""


class KalabError(Exception):
    """A problem the user can fix; ``str(err)`` is one sentence, shown without a traceback."""
