"""A small process-wide cache of read-only descriptors, so that open files do not grow
with the number of shapes: an idle shape holds none, and at most ``capacity`` logs keep
one open between reads (least recently used closed first).

Only for reads that complete without an await in between (``os.pread`` on the event
loop): a descriptor is never evicted while one of its reads is in progress. A response
that streams across awaits opens a descriptor of its own (see ``FileSlice``).
"""

from __future__ import annotations

import os
from collections import OrderedDict

DEFAULT_CAPACITY = 256


class ReadDescriptors:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._fds: OrderedDict[str, int] = OrderedDict()

    def get(self, path: str) -> int:
        """An open read-only descriptor of ``path``."""
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        fd = os.open(path, os.O_RDONLY)
        self._fds[path] = fd
        while len(self._fds) > self.capacity:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def forget(self, path: str) -> None:
        """Close ``path``'s descriptor, if one is open (the file is going away)."""
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return len(self._fds)


READERS = ReadDescriptors()
