#!/usr/bin/env python3
"""Write the ONNX node conformance cases out of the `onnx` PyPI package.

Each case becomes a directory `OUT/<case name>/` holding `model.onnx` and
`test_data_set_N/{input,output}_K.pb`, the layout of ONNX's own backend test
data, so `wpc conformance OUT` can run them without Python.

Usage: gen_conformance.py OUT_DIR
The output depends only on the installed `onnx` version and on this script's
`LAYOUT`, both recorded in `OUT_DIR/ONNX_VERSION`; an existing directory with
the same stamp is reused.
"""
import os
import shutil
import sys

import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node as node_cases


def tensor_or_value_proto(value, name):
    """Serialise one input/output; sequences, optionals and maps stay out (wpc rejects them).

    Cases over types numpy has no dtype for (int4, uint2, …) give their values
    as `TensorProto`s already: those are kept as they are, renamed.
    """
    if isinstance(value, onnx.TensorProto):
        proto = onnx.TensorProto()
        proto.CopyFrom(value)
        proto.name = name
        return proto
    try:
        return numpy_helper.from_array(value, name)
    except Exception:  # noqa: BLE001 - non-tensor values
        return None


# Bumped whenever this script writes cases differently, so a cached directory
# from an older script is written again.
LAYOUT = 2


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    stamp = os.path.join(out, "ONNX_VERSION")
    version = f"{onnx.__version__} layout {LAYOUT}"
    if os.path.exists(stamp) and open(stamp).read().strip() == version:
        print(f"conformance cases for onnx {onnx.__version__} already in {out}")
        return 0
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    written = skipped = 0
    for case in node_cases.collect_testcases():
        case_dir = os.path.join(out, case.name)
        os.makedirs(case_dir, exist_ok=True)
        with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        graph = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(case_dir, f"test_data_set_{i}")
            os.makedirs(ds, exist_ok=True)
            for kind, values, infos in (("input", inputs, graph.input), ("output", outputs, graph.output)):
                for k, value in enumerate(values):
                    name = infos[k].name if k < len(infos) else ""
                    proto = tensor_or_value_proto(value, name)
                    if proto is None:
                        skipped += 1
                        continue
                    with open(os.path.join(ds, f"{kind}_{k}.pb"), "wb") as f:
                        f.write(proto.SerializeToString())
        written += 1
    with open(stamp, "w") as f:
        f.write(version + "\n")
    print(f"wrote {written} conformance cases to {out} ({skipped} non-tensor values left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
