#!/usr/bin/env python3
"""Write the T.A.R.S. Grafana dashboards (deploy/grafana/tars_dashboards) as JSON.

    python deploy/grafana/generate.py            # (re)write deploy/grafana/dashboards/*.json
    python deploy/grafana/generate.py --check    # exit 1 if the committed JSON is not what the code says

The JSON is committed so Grafana can provision it without Python; --check (and a test) keeps the two
from drifting apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    # Loaded by path (the tests do) rather than run as a script: the package beside it must import.
    sys.path.insert(0, str(HERE))

from tars_dashboards import render_all  # noqa: E402

DEFAULT_OUTPUT = HERE / "dashboards"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="directory of the JSON files")
    args = parser.parse_args(argv)
    output: Path = args.output

    generated = render_all()
    # A dashboard removed from the code must not live on in Grafana through a stale file.
    stale = sorted(path.name for path in output.glob("*.json") if path.name not in generated) if output.is_dir() else []

    if args.check:
        differing = [
            name
            for name, text in generated.items()
            if not (output / name).is_file() or (output / name).read_text(encoding="utf-8") != text
        ]
        for name in differing:
            print(f"{output / name}: differs from what the code generates", file=sys.stderr)
        for name in stale:
            print(f"{output / name}: no dashboard in the code generates it", file=sys.stderr)
        if differing or stale:
            print("run: python deploy/grafana/generate.py", file=sys.stderr)
            return 1
        return 0

    output.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (output / name).unlink()
    for name, text in generated.items():
        (output / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(generated)} dashboards to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
