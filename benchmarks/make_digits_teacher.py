"""Train the digits teacher and write the checkpoint shipped in the package (flash_dmd/assets/digits_teacher.safetensors).

    python benchmarks/make_digits_teacher.py                 # the defaults (about 2.5 minutes on one CPU thread)
    python benchmarks/make_digits_teacher.py --out t.safetensors --steps 200

Training runs on one thread, so the summation order, and with it the weights, are reproducible on the same torch build.
The file records its config, seed, torch version and training time (see flash_dmd.digits.digits_teacher_meta).
"""
from __future__ import annotations
import argparse, time
from dataclasses import replace

def main(argv=None):
    import torch
    from flash_dmd.digits import DigitsTeacherConfig, train_digits_teacher, save_digits_teacher, TEACHER_ASSET
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=str(TEACHER_ASSET), help='where to write the checkpoint (default: the package asset)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--steps', type=int, default=None, help='override the number of optimiser steps (default: the config default)')
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = DigitsTeacherConfig() if a.steps is None else replace(DigitsTeacherConfig(), steps=a.steps)
    t0 = time.perf_counter()
    model = train_digits_teacher(cfg, seed=a.seed, progress=True)
    secs = time.perf_counter() - t0
    save_digits_teacher(model, cfg, a.seed, a.out, train_seconds=round(secs, 1), threads=1)
    print(f"trained in {secs:.0f}s; wrote {a.out}")

if __name__ == '__main__':
    main()
