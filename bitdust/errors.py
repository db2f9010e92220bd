"""Exceptions shared by every part of the node, for failures whose cure is the same everywhere.

The process maps them to exit codes that tell systemd whether restarting can help
(``RestartPreventExitStatus=`` in the unit): a restart cannot fix a file of a newer format.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """What every `bitdust` command exits with (the man page lists them).

    The unit's ``RestartPreventExitStatus=`` names CONFIG and DATA_FORMAT: restarting cannot cure
    either. Any other non-zero status is a failure that systemd's ``Restart=on-failure`` retries.
    """

    OK = 0
    #: the node failed (a port taken, a peer unreachable), or the request was refused
    FAILURE = 1
    #: invalid configuration or arguments; the reasons are printed
    CONFIG = 2
    #: a kept file is of a newer or unreadable format (sysexits' EX_DATAERR)
    DATA_FORMAT = 65
    #: a bug of ours; the one-line message names the exception (sysexits' EX_SOFTWARE)
    INTERNAL = 70
    #: interrupted by Ctrl-C (128 + SIGINT, as shells report it)
    INTERRUPTED = 130


class DataFormatError(Exception):
    """A file the node keeps (database, store) is of a newer or unreadable format.

    Restarting will not help: the operator must upgrade the program or move the file away. The
    message names the file and says which.
    """
