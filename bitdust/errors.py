"""Exceptions shared by every part of the node, for failures whose cure is the same everywhere.

The process maps them to exit codes that tell systemd whether restarting can help
(``RestartPreventExitStatus=`` in the unit): a restart cannot fix a file of a newer format.
"""

from __future__ import annotations


class DataFormatError(Exception):
    """A file the node keeps (database, store) is of a newer or unreadable format.

    Restarting will not help: the operator must upgrade the program or move the file away. The
    message names the file and says which.
    """
