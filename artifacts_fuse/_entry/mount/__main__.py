"""Supervisor entry: run as ``python mount <workspace> <mountpoint>`` with argv[0] ``artifacts``
from this directory, so ``ps`` shows ``artifacts mount <workspace> <mountpoint>`` (SPEC.md §5.1)
and ``pgrep -af "artifacts mount <ws> <path>"`` finds it. Settings arrive on stdin."""

import sys

from artifacts_fuse.daemon import supervise

sys.exit(supervise())
