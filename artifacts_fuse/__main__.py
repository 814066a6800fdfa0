"""``python -m artifacts_fuse serve <mountpoint>``: the FUSE-serving child of a background mount
(settings as JSON on stdin, never in argv). ``python -m artifacts_fuse unmount <mountpoint>``
unmounts gracefully."""

import sys


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        import logging
        import os

        from artifacts_fuse.daemon import serve_child

        rc = serve_child()
        # Everything is committed (or given up on, logged): exit without waiting for threads
        # of a volume whose servers may be gone.
        logging.shutdown()
        os._exit(rc)
    if len(argv) == 2 and argv[0] == "unmount":
        from artifacts_fuse.mount import unmount

        unmount(argv[1])
        return 0
    print("usage: python -m artifacts_fuse serve|unmount <mountpoint>", file=sys.stderr)
    return 2


sys.exit(main(sys.argv[1:]))
