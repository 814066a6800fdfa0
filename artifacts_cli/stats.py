"""``stats <mountpoint>``: a mount's live counters; ``status`` and ``migrate`` as the docs have them.

``.stats`` at a mount's root is a Prometheus text snapshot (``artifacts_core.metrics``): counters
per operation and errno, latency histograms, the chunk store's and Redis client's counters,
volume gauges. ``stats`` reads it through the mount — the same bytes ``cat`` shows — and renders
one row per series: histograms become count, mean and sum per operation (their buckets are left
to ``cat`` and scrapers), every other sample is shown as is. ``--format json`` gives
``{"metrics": [{"name", "labels", "value"}…]}``.

``migrate`` prints "not yet implemented" as the product's docs say (SPEC.md §2.2) and names the
tools to use meanwhile (``artifacts import`` among them). ``status`` is ``status.py``.
"""

from __future__ import annotations

import os
import re

from artifacts_cli.config import CliError

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        samples.append((m.group(1), labels, value))
    return samples


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:.6g}"


def cmd_stats(args) -> int:
    from artifacts_fuse.mountinfo import is_mounted

    mp = os.path.abspath(args.mountpoint)
    if not is_mounted(mp):
        raise CliError(f"path {mp} is not mounted", "mount a workspace there with `artifacts mount`",
                       exit_code=8)
    try:
        with open(os.path.join(mp, ".stats"), encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CliError(f"cannot read {mp}/.stats: {e.strerror}", "is it an Artifacts mount?", exit_code=8) from None
    samples = parse_prometheus(text)
    hist: dict[str, dict[str, float]] = {}
    rows = []
    for name, labels, value in samples:
        if name.endswith("_bucket"):
            continue
        if name.endswith(("_sum", "_count")) and "op" in labels:
            kind = "sum" if name.endswith("_sum") else "count"
            hist.setdefault(labels["op"], {})[kind] = value
            continue
        label = ",".join(f"{k}={v}" for k, v in labels.items())
        rows.append((name.removeprefix("artifacts_"), label, _fmt(value)))
    for op, h in sorted(hist.items()):
        count, total = h.get("count", 0.0), h.get("sum", 0.0)
        mean = f"{total / count * 1000:.3f} ms" if count else "-"
        rows.append(("op_seconds", f"op={op}", f"count={int(count)} mean={mean} sum={total:.3f}s"))
    data = {"mountpoint": mp, "metrics": [{"name": n, "labels": lb, "value": v} for n, lb, v in samples]}
    args.out.table(("METRIC", "LABELS", "VALUE"), rows, data=data)
    return 0


def cmd_migrate(args) -> int:
    args.out.result("migrate: not yet implemented; copy data into a workspace with `artifacts import` "
                    "(a local tree or an S3 prefix), or into a mount with rclone or cp -a",
                    data={"implemented": False})
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("stats", help="a mount's live counters (from its .stats file)")
    p.add_argument("mountpoint", help="a mounted workspace (its .stats file is read)")
    p.set_defaults(func=cmd_stats)
    p = sub.add_parser("migrate", help="bulk import (not yet implemented)")
    p.set_defaults(func=cmd_migrate)
