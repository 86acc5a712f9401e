"""Cut a run folder at a search time (`nachos_tf.nas.cut.cut_run`), to resume it with that shorter limit.

The comparison uses it where a run was given more search time than its protocol says: the proxy rows of
seeds 1 and 2 searched for the supernet methods' 1,200 s plus the shipped preset's 10,067.6 s, while those
seeds' own supernets cost less. Cut at the right limit and resumed by `compare.py --resume` with that seed's
supernet, such a run replays what it searched before the limit, finishes the generation running there and
runs its final stage again::

    .venv/bin/python benchmarks/cut_run.py runs/compare_rs/nachos_proxy/seed1 runs/compare_cut/nachos_proxy/seed1 \\
        --at-seconds 7202.6
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nachos_tf.errors import NachosError  # noqa: E402
from nachos_tf.nas.cut import cut_run  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", help="the run folder to cut (left as it is)")
    p.add_argument("out_dir", help="the new folder (absent or empty)")
    p.add_argument("--at-seconds", type=float, required=True, help="search seconds to cut at")
    a = p.parse_args(argv)
    try:
        note = cut_run(a.run_dir, a.out_dir, a.at_seconds)
    except NachosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.out_dir}: kept {note['kept']} search records of {note['kept'] + note['dropped']} "
          f"(clock {note['clock_s']:.1f} s of {note['source_search_s']:.1f} s); resume it with a limit of "
          f"{a.at_seconds:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
