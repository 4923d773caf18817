"""What survives a restart: validators and caches, in SQLite in the state directory.

- `validators`: when each document's bytes last changed (Last-Modified);
- `cache`: parsed records, rendered bodies and finished documents, by content;
- `statefile`: the SQLite file under each, and what to do when it is damaged or
  cannot be written.
"""
from __future__ import annotations

from .cache import Cache
from .validators import SETTLE_SECONDS, Stamp, Validators

__all__ = ["SETTLE_SECONDS", "Cache", "Stamp", "Validators"]
