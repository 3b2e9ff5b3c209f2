#!/usr/bin/env python3
"""Times native onnxruntime (CPU, one thread) on the benchmark's models:
the ceiling the wasm engines are compared with.

Usage: ort_native.py RUNS LABEL MODEL.onnx NAME=FILE.npy... [-- LABEL ...]
Prints one JSON line per model: {model, engine, median_ms, runs}.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

WARMUP = 3


def bench(runs, label, path, specs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds = {name: np.load(file) for name, file in (s.split("=", 1) for s in specs)}
    for _ in range(WARMUP):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"model": label, "engine": "onnxruntime native (1 thread)", "median_ms": float(np.median(times)), "runs": runs}))


def main():
    runs = int(sys.argv[1])
    group = []
    for a in sys.argv[2:] + ["--"]:
        if a == "--":
            if group:
                bench(runs, group[0], group[1], group[2:])
            group = []
        else:
            group.append(a)


if __name__ == "__main__":
    main()
