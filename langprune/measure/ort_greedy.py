"""Greedy tokens of an ONNX Runtime model: `python -m langprune.measure.ort_greedy MODEL N_NEW < prompts`.

One prompt a line on stdin (token ids), its N_NEW greedy tokens a line on stdout. Needs only numpy
and onnxruntime: `arm64.py` runs it with an aarch64 Python under qemu-user, against `onnxrt.generate`
on the host.
"""

import sys

from .onnxrt import generate, open_session


def main() -> None:
    session, n_new = open_session(sys.argv[1]), int(sys.argv[2])
    for line in sys.stdin:
        print(" ".join(map(str, generate(session, [int(t) for t in line.split()], n_new))), flush=True)


if __name__ == "__main__":
    main()
