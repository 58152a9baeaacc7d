#!/usr/bin/env python3
"""flash-repro: run a sweep and write results, tables and figures under results/.

    python run_all.py                          # the CPU default (preset 'smoke', built-in corpus)
    python run_all.py --preset gpu-speed       # step latency at ~110M on a GPU
    python run_all.py --preset gpu-quality     # quality at equal training time on a GPU
    python run_all.py --help
"""
import sys

from suite.cli import main

if __name__ == "__main__":
    sys.exit(main())
