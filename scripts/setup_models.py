#!/usr/bin/env python3
"""Prepare the real-model test set: models from registry packages, a fixed
seeded input for each, and onnxruntime's outputs on it as the oracle.

Usage: setup_models.py OUT_DIR

* The 9 light CNNs shipped in the `onnx` package (onnx/backend/test/data/light).
  Their stored outputs come with no stored input, so every model is run by
  onnxruntime on a seeded random input instead.
* The Silero VAD models of the `silero-vad` PyPI package, fetched with
  `pip download --no-deps` (no model hub involved).
* A BERT-style encoder (scripts/bert_encoder.py) with seeded random
  weights, fed token ids across its whole vocabulary; and the same encoder
  as transformers' BERT exports at opset 14 (decomposed LayerNorm, erf
  GELU, Div scale, an additive attention mask). That export again with
  the batch and sequence left symbolic, as torch writes dynamic axes, in
  two cases of one model (`bert_dynamic_s128`, `bert_dynamic_s37`): the
  same graph run at two sequence lengths.
* A MobileNetV3-style CNN (scripts/mobilenet_v3.py): HardSwish as
  x*clip(x+3,0,6)/6, squeeze-excite with HardSigmoid, Constant nodes; and
  the same CNN with batch, height and width left symbolic, in two cases
  of one model (`mobilenet_dynamic_1x64x64`, `mobilenet_dynamic_2x40x72`).
* The Silero VAD model with unnamed input dims again at a second chunk
  length (`silero_vad_s320`), the opset-15 one at a batch of 2 and
  another length (`silero_vad_16k_op15_b2`: its LSTM over a dynamic
  batch), the one whose LSTM walks a `sequence_length` of chunks at
  another length (`silero_vad_16k_sequence_t9`), the half-precision
  export at a batch of 3 (`silero_vad_half_b3`) and the opset-18 one
  without If at a batch of 2 (`silero_vad_op18_ifless_b2`), so every
  model of the set with a symbolic dim runs at two sizes of it.
* A detector's post-processing as torch and torchvision export it
  (scripts/detect_postprocess.py: a score threshold through NonZero and
  GatherND, then NonMaxSuppression): sizes only the data decides, at
  three box counts, one where no box passes (`detect_postprocess_n*`).

The manifest's `dynamic` list names the groups of cases that share one
model with dims left to run time, and the `--dim` sizes to compile it
with (a range leaves the dim to run time): one bundle must match
onnxruntime on every case of its group.
* The dynamic BERT export with its MatMul weights quantized by
  onnxruntime's own weight-only quantizer (`MatMulNBitsQuantizer`:
  `com.microsoft` MatMulNBits, blocks of 32) at 4 bits with zero points,
  4 bits symmetric, 8 bits symmetric and 2 bits (`bert_ort_q4`,
  `bert_ort_q4_sym`, `bert_ort_q8_sym`, `bert_ort_q2`; the two 4-bit ones
  with their embedding tables quantized too, as GatherBlockQuantized over
  uint4 values with zero points and over int4 values): models quantized
  the way users quantize them, whose oracle is onnxruntime running the
  same packed weights.
* The same export through onnxruntime's `quantize_dynamic`
  (DynamicQuantizeLinear, MatMulInteger; `bert_ort_dynamic_u8`) and its
  `quantize_static` in QDQ form (`bert_ort_qdq`, whose oracle runs the
  graph's ops as written: onnxruntime's own fusions of Q/DQ pairs round
  differently).
* Small recurrent layers (GRU both ways of resetting, RNN, LSTM with
  peepholes) with seeded random weights: the conformance cases use uniform
  weights, under which every hidden unit computes the same thing, so they
  cannot catch a unit reading another unit's gate.

Writes OUT_DIR/manifest.json listing, per model, its file, input and expected
output .npy files. Deterministic: the same packages give the same files.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort

import bert_encoder
import detect_postprocess
import mobilenet_v3

SYMBOLS = {"batch": 1, "sequence": 512, "sequence_length": 4}
NP_TYPES = {1: np.float32, 7: np.int64, 10: np.float16, 11: np.float64, 6: np.int32, 9: np.bool_}


def make_input(name, vi, rng):
    t = vi.type.tensor_type
    dims = []
    for axis, d in enumerate(t.shape.dim):
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.dim_param:
            dims.append(SYMBOLS[d.dim_param])
        else:
            # Unnamed dims: a batch of one, and one 512-sample audio chunk.
            dims.append(512 if (name, axis) == ("input", 1) else 1)
    dtype = NP_TYPES[t.elem_type]
    if name == "sr":
        return np.array(16000, dtype=np.int64)
    if dtype == np.int64:
        return rng.integers(0, 10, size=dims).astype(np.int64)
    scale = 0.1 if name in ("state", "h", "c") else 1.0
    return (rng.standard_normal(dims) * scale).astype(dtype)


def expose_intermediates(model, count=4):
    """Add the input of the final Softmax and `count` evenly spaced node
    outputs as graph outputs. The light CNNs have degenerate weights whose
    softmax is uniform for every input, so only intermediates make the
    comparison with onnxruntime meaningful."""
    model = onnx.shape_inference.infer_shapes(model)
    info = {v.name: v for v in model.graph.value_info}
    nodes = list(model.graph.node)
    picks = [nodes[int(i * (len(nodes) - 1) / count)].output[0] for i in range(1, count)]
    softmax = [n for n in nodes if n.op_type == "Softmax"]
    if softmax:
        picks.append(softmax[-1].input[0])
    have = {o.name for o in model.graph.output}
    for name in dict.fromkeys(picks):
        if name in info and name not in have:
            model.graph.output.append(info[name])
    return model


def add_case(out, cases, name, model_path, intermediates=False, feeds=None, as_written=False):
    """Copies the model into OUT/name with its input (`feeds`, or seeded
    random data) and onnxruntime's outputs, and lists it in `cases`.
    `as_written`: onnxruntime runs the graph's ops as they are, without
    its graph optimizations (which fuse Q/DQ pairs into integer kernels
    that round differently from the ops they replace)."""
    case_dir = os.path.join(out, name)
    os.makedirs(case_dir, exist_ok=True)
    model = onnx.load(model_path)
    if intermediates:
        model = expose_intermediates(model)
    model_path = os.path.join(case_dir, "model.onnx")
    onnx.save(model, model_path)
    init = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    given, feeds, inputs = feeds or {}, {}, {}
    for k, vi in enumerate(i for i in model.graph.input if i.name not in init):
        arr = given[vi.name] if vi.name in given else make_input(vi.name, vi, rng)
        feeds[vi.name] = arr
        inputs[vi.name] = f"input_{k}.npy"
        np.save(os.path.join(case_dir, inputs[vi.name]), arr)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if as_written:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    outputs = {}
    for k, (o, arr) in enumerate(zip(sess.get_outputs(), sess.run(None, feeds))):
        outputs[o.name] = f"output_{k}.npy"
        np.save(os.path.join(case_dir, outputs[o.name]), arr)
    cases.append({"name": name, "model": f"{name}/model.onnx", "inputs": inputs, "outputs": outputs})


def recurrent_model(path, op, rng, **attrs):
    """One `op` layer (hidden 5, input 3, 4 steps, batch 2) with random
    weights and biases, unequal sequence lengths and an initial state."""
    from onnx import helper, numpy_helper, TensorProto

    gates = {"GRU": 3, "RNN": 1, "LSTM": 4}[op]
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    hidden, inp, steps, batch = 5, 3, 4, 2
    weights = {
        "W": rng.standard_normal((dirs, gates * hidden, inp)),
        "R": rng.standard_normal((dirs, gates * hidden, hidden)) * 0.5,
        "B": rng.standard_normal((dirs, 2 * gates * hidden)),
        "P": rng.standard_normal((dirs, 3 * hidden)),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array([steps, steps - 1], np.int32), "lens"))
    names = ["X", "W", "R", "B", "lens", "h0"] + (["", "P"] if op == "LSTM" else [])
    node = helper.make_node(op, names, ["Y", "Y_h"], hidden_size=hidden, **attrs)
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info("X", f32, [steps, batch, inp]),
         helper.make_tensor_value_info("h0", f32, [dirs, batch, hidden])],
        [helper.make_tensor_value_info("Y", f32, None), helper.make_tensor_value_info("Y_h", f32, None)],
        initializer=[i for i in inits if i.name in names],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)


def add_recurrent_cases(out, cases):
    rng = np.random.default_rng(1)
    layers = [
        ("gru_bidirectional", "GRU", {"direction": "bidirectional"}),
        ("gru_linear_before_reset", "GRU", {"linear_before_reset": 1}),
        ("rnn_bidirectional", "RNN", {"direction": "bidirectional"}),
        ("lstm_peepholes_reverse", "LSTM", {"direction": "reverse"}),
    ]
    for name, op, attrs in layers:
        path = os.path.join(out, f"{name}.onnx")
        recurrent_model(path, op, rng, **attrs)
        add_case(out, cases, name, path)


def ort_quantized(src, dst, bits, symmetric, gather=False):
    """`src` with its MatMul weights quantized by onnxruntime's
    MatMulNBits quantizer (round to nearest, blocks of 32), and with
    `gather` its embedding tables too (GatherBlockQuantized over uint4
    values with zero points, or int4 values when symmetric)."""
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    ops = ("MatMul", "Gather") if gather else ("MatMul",)
    kinds = dict(op_types_to_quantize=ops, quant_axes=(("MatMul", 0), ("Gather", 1)))
    config = mnq.DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=symmetric, bits=bits, **kinds)
    model = onnx.load(src)
    if gather:
        # int4 and uint4 tables need opset 21, which the quantizer would
        # otherwise force on a graph written for an older one.
        model = onnx.version_converter.convert_version(model, 21)
    q = mnq.MatMulNBitsQuantizer(model, bits=bits, block_size=32, is_symmetric=symmetric, algo_config=config, **kinds)
    q.process()
    onnx.save(q.model.model, dst)


def ort_dynamic(src, dst):
    """`src` through onnxruntime's `quantize_dynamic`: DynamicQuantizeLinear
    and MatMulInteger with uint8 weights per channel. (Full-range int8
    weights are left out: onnxruntime's AVX2 kernel sums pairs of
    uint8 x int8 products in int16 and saturates, so its outputs are not
    MatMulInteger's on such a machine; wpc computes them exactly.)"""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, weight_type=QuantType.QUInt8, per_channel=True)


def ort_static_qdq(src, dst):
    """`src` through onnxruntime's `quantize_static` in QDQ form (uint8
    activations per tensor, int8 weights per channel), calibrated on
    three seeded batches."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.left = iter([bert_encoder.feeds_for(True, n) for n in (16, 37, 50)])

        def get_next(self):
            return next(self.left, None)

    quantize_static(
        src,
        dst,
        Batches(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    # Bump the set's version when the list of models changes.
    stamp = f"set 12, onnx {onnx.__version__}, onnxruntime {ort.__version__}"
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest) and json.load(open(manifest)).get("made_with") == stamp:
        print(f"real models already prepared in {out}")
        return 0
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cases = []
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    for path in sorted(glob.glob(os.path.join(light, "*.onnx"))):
        add_case(out, cases, os.path.basename(path)[:-5], path, intermediates=True)
    wheels = os.path.join(out, "wheels")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", wheels, "silero-vad"], check=True)
    for whl in sorted(glob.glob(os.path.join(wheels, "*.whl"))):
        with zipfile.ZipFile(whl) as z:
            for member in sorted(z.namelist()):
                if member.endswith(".onnx"):
                    z.extract(member, wheels)
                    add_case(out, cases, os.path.basename(member)[:-5], os.path.join(wheels, member))
    bert_path = os.path.join(out, "bert_encoder.onnx")
    add_case(out, cases, "bert_encoder", bert_path, feeds=bert_encoder.bert(bert_path))
    exported_path = os.path.join(out, "bert_exported.onnx")
    add_case(out, cases, "bert_exported", exported_path, feeds=bert_encoder.bert(exported_path, exported=True))
    dynamic_path = os.path.join(out, "bert_dynamic.onnx")
    bert_encoder.bert(dynamic_path, exported=True, dynamic=True)
    for seq in (128, 37):
        feeds = bert_encoder.feeds_for(True, seq)
        add_case(out, cases, f"bert_dynamic_s{seq}", dynamic_path, feeds=feeds)
    for name, bits, symmetric, gather in (
        ("bert_ort_q4", 4, False, True),
        ("bert_ort_q4_sym", 4, True, True),
        ("bert_ort_q8_sym", 8, True, False),
        ("bert_ort_q2", 2, False, False),
    ):
        path = os.path.join(out, f"{name}.onnx")
        ort_quantized(dynamic_path, path, bits, symmetric, gather)
        add_case(out, cases, name, path, feeds=bert_encoder.feeds_for(True, 37))
    dyn_q = os.path.join(out, "bert_ort_dynamic_u8.onnx")
    ort_dynamic(dynamic_path, dyn_q)
    add_case(out, cases, "bert_ort_dynamic_u8", dyn_q, feeds=bert_encoder.feeds_for(True, 37))
    qdq = os.path.join(out, "bert_ort_qdq.onnx")
    ort_static_qdq(dynamic_path, qdq)
    add_case(out, cases, "bert_ort_qdq", qdq, feeds=bert_encoder.feeds_for(True, 37), as_written=True)
    mobilenet_path = os.path.join(out, "mobilenet_v3.onnx")
    add_case(out, cases, "mobilenet_v3", mobilenet_path, feeds=mobilenet_v3.mobilenet_v3(mobilenet_path))
    mobilenet_dynamic = os.path.join(out, "mobilenet_dynamic.onnx")
    mobilenet_v3.mobilenet_v3(mobilenet_dynamic, dynamic=True)
    for b, h, w in ((1, 64, 64), (2, 40, 72)):
        add_case(out, cases, f"mobilenet_dynamic_{b}x{h}x{w}", mobilenet_dynamic, feeds=mobilenet_v3.feeds_for(b, h, w))
    silero = next(c for c in cases if c["name"] == "silero_vad")
    chunk = np.random.default_rng(4).standard_normal((1, 320)).astype(np.float32)
    add_case(out, cases, "silero_vad_s320", os.path.join(out, silero["model"]), feeds={"input": chunk})
    rng = np.random.default_rng(5)
    op15 = next(c for c in cases if c["name"] == "silero_vad_16k_op15")
    add_case(out, cases, "silero_vad_16k_op15_b2", os.path.join(out, op15["model"]), feeds={
        "input": rng.standard_normal((2, 320)).astype(np.float32),
        "state": (rng.standard_normal((2, 2, 128)) * 0.1).astype(np.float32),
    })
    chunks = next(c for c in cases if c["name"] == "silero_vad_16k_sequence")
    add_case(out, cases, "silero_vad_16k_sequence_t9", os.path.join(out, chunks["model"]), feeds={
        "input": rng.standard_normal((9, 576)).astype(np.float32),
    })
    for name, batch, samples, given in (("silero_vad_half", 3, 384, {}), ("silero_vad_op18_ifless", 2, 320, {"sr": 16000})):
        case = next(c for c in cases if c["name"] == name)
        feeds = {k: np.array(v, dtype=np.int64) for k, v in given.items()}
        feeds["input"] = rng.standard_normal((batch, samples)).astype(np.float32)
        feeds["state"] = (rng.standard_normal((2, batch, 128)) * 0.1).astype(np.float32)
        add_case(out, cases, f"{name}_b{batch}", os.path.join(out, case["model"]), feeds=feeds)
    detect = os.path.join(out, "detect_postprocess.onnx")
    detect_postprocess.detect_postprocess(detect)
    for boxes, seed, passing in ((64, 1, True), (150, 2, True), (20, 3, False)):
        feeds = detect_postprocess.feeds_for(boxes, seed, passing)
        add_case(out, cases, f"detect_postprocess_n{boxes}", detect, feeds=feeds)
    add_recurrent_cases(out, cases)
    dynamic = [
        {"dims": {"batch": "1", "sequence": "1..128"}, "cases": ["bert_dynamic_s128", "bert_dynamic_s37"]},
        {"dims": {"batch": "1..2", "height": "32..96", "width": "32..96"},
         "cases": ["mobilenet_dynamic_1x64x64", "mobilenet_dynamic_2x40x72"]},
        # Unnamed dims, named by the importer; `sr` steers an If.
        {"dims": {"input.0": "1", "state.1": "1", "input.1": "256..576"}, "freeze": ["sr"],
         "cases": ["silero_vad", "silero_vad_s320"]},
        {"dims": {"batch": "1..4", "sequence": "256..576"}, "freeze": ["sr"],
         "cases": ["silero_vad_16k_op15", "silero_vad_16k_op15_b2"]},
        {"dims": {"sequence_length": "1..16"}, "cases": ["silero_vad_16k_sequence", "silero_vad_16k_sequence_t9"]},
        {"dims": {"batch": "1..4", "sequence": "256..576"}, "cases": ["silero_vad_half", "silero_vad_half_b3"]},
        {"dims": {"batch": "1..4", "sequence": "256..576"}, "freeze": ["sr"],
         "cases": ["silero_vad_op18_ifless", "silero_vad_op18_ifless_b2"]},
        {"dims": {"num_boxes": "1..200"},
         "cases": ["detect_postprocess_n64", "detect_postprocess_n150", "detect_postprocess_n20"]},
    ]
    json.dump({"made_with": stamp, "cases": cases, "dynamic": dynamic}, open(manifest, "w"), indent=1)
    print(f"prepared {len(cases)} real models in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
