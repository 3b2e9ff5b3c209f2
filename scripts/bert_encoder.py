"""A synthetic BERT-style encoder with seeded random weights (no model hub
is reachable): token + position embeddings, LayerNorm, then LAYERS encoder
blocks of multi-head self-attention and a GELU feed-forward network, each
with a residual and LayerNorm, as PyTorch exports them (opset 17).

`bert(path, exported=True)` writes it the way transformers' BERT comes out
of `torch.onnx.export` at opset 14: every LayerNorm decomposed into
ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add, the attention scale a
Div, and an `attention_mask` input turned into an additive mask
((1 - mask) * -10000, unsqueezed to the heads).

`bert(path, exported=True, dynamic=True)` also leaves the batch and the
sequence length symbolic (`batch`, `sequence`), as `torch.onnx.export`
with `dynamic_axes` writes them: every shape the graph reshapes to is
computed from `Shape` of a tensor (`Shape` → `Gather` → `Unsqueeze` →
`Concat`), and the position embeddings are sliced to the sequence.

`setup_models.py` adds it to the real-model set, which the tests, the
browser tests and the benchmark share.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEQ, HIDDEN, HEADS, FFN, LAYERS, VOCAB = 128, 256, 4, 1024, 4, 1000


def bert(path, exported=False, dynamic=False, seq=SEQ):
    """Writes the model to `path`; returns its seeded feeds (of `seq`
    tokens)."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def w(name, *shape, scale=0.05):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name, values, dtype=np.int64):
        inits.append(numpy_helper.from_array(np.array(values, dtype=dtype), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def layer_norm(x, name):
        if not exported:
            g = const(f"{name}_g", np.ones(HIDDEN), np.float32)
            b = const(f"{name}_b", np.zeros(HIDDEN), np.float32)
            return node("LayerNormalization", [x, g, b], name, axis=-1, epsilon=1e-12)
        g = w(f"{name}_g", HIDDEN, scale=0.1)
        b = w(f"{name}_b", HIDDEN, scale=0.1)
        mean = node("ReduceMean", [x], f"{name}_mean", axes=[-1])
        d = node("Sub", [x, mean], f"{name}_sub")
        sq = node("Pow", [d, const(f"{name}_two", 2.0, np.float32)], f"{name}_pow")
        var = node("ReduceMean", [sq], f"{name}_var", axes=[-1])
        ve = node("Add", [var, const(f"{name}_eps", 1e-12, np.float32)], f"{name}_add_eps")
        n = node("Div", [d, node("Sqrt", [ve], f"{name}_sqrt")], f"{name}_div")
        return node("Add", [node("Mul", [n, g], f"{name}_mul"), b], name)

    def linear(x, n_in, n_out, name):
        y = node("MatMul", [x, w(f"{name}_w", n_in, n_out)], f"{name}_mm")
        return node("Add", [y, w(f"{name}_b", n_out, scale=0.01)], name)

    def size_of(t, axis, name):
        """Dim `axis` of `t` as a 1-element vector, as torch computes it."""
        shape = node("Shape", [t], f"{name}_shape")
        d = node("Gather", [shape, const(f"{name}_axis", axis)], f"{name}_dim", axis=0)
        return node("Unsqueeze", [d, const(f"{name}_unsq", [0])], name)

    tok = node("Gather", [w("tok_emb", VOCAB, HIDDEN), "input_ids"], "tok")
    pos_emb = w("pos_emb", 1, SEQ, HIDDEN)
    if dynamic:
        n = size_of("input_ids", 1, "seq_len")
        pos_emb = node("Slice", [pos_emb, const("pos_start", [0]), n, const("pos_axis", [1])], "pos_sliced")
    pos = node("Add", [tok, pos_emb], "emb")
    x = layer_norm(pos, "emb_ln")
    dh = HIDDEN // HEADS
    if dynamic:
        def shape_of(t, tail, name):
            b = size_of(t, 0, f"{name}_b")
            n = size_of(t, 1, f"{name}_n")
            return node("Concat", [b, n, const(f"{name}_tail", tail)], name, axis=0)
    else:
        heads_shape = const("heads_shape", [1, SEQ, HEADS, dh])
        merged_shape = const("merged_shape", [1, SEQ, HIDDEN])
    if not exported:
        scale = const("scale", [1.0 / np.sqrt(dh)], np.float32)
    else:
        m = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
        m = node("Sub", [const("mask_one", 1.0, np.float32), m], "mask_inv")
        m = node("Mul", [m, const("mask_big", -10000.0, np.float32)], "mask_add")
        mask = node("Unsqueeze", [m, const("mask_axes", [1, 2])], "mask")
    for l in range(LAYERS):
        p = f"l{l}"
        qkv = []
        for part in "qkv":
            t = linear(x, HIDDEN, HIDDEN, f"{p}_{part}")
            heads = shape_of(t, [HEADS, dh], f"{p}_{part}_hs") if dynamic else heads_shape
            t = node("Reshape", [t, heads], f"{p}_{part}_heads")
            perm = [0, 2, 3, 1] if part == "k" else [0, 2, 1, 3]
            qkv.append(node("Transpose", [t], f"{p}_{part}_t", perm=perm))
        scores = node("MatMul", [qkv[0], qkv[1]], f"{p}_scores")
        if exported:
            root = const(f"{p}_root", np.sqrt(dh), np.float32)
            scores = node("Add", [node("Div", [scores, root], f"{p}_div"), mask], f"{p}_scaled")
        else:
            scores = node("Mul", [scores, scale], f"{p}_scaled")
        probs = node("Softmax", [scores], f"{p}_probs", axis=-1)
        ctx = node("MatMul", [probs, qkv[2]], f"{p}_ctx")
        ctx = node("Transpose", [ctx], f"{p}_ctx_t", perm=[0, 2, 1, 3])
        merged = shape_of(ctx, [-1], f"{p}_ms") if dynamic else merged_shape
        ctx = node("Reshape", [ctx, merged], f"{p}_ctx_m")
        attn = linear(ctx, HIDDEN, HIDDEN, f"{p}_o")
        x = layer_norm(node("Add", [x, attn], f"{p}_res1"), f"{p}_ln1")
        h = linear(x, HIDDEN, FFN, f"{p}_ff1")
        # GELU as exported: 0.5·h·(1 + erf(h/√2))
        e = node("Erf", [node("Div", [h, const(f"{p}_sqrt2", [np.sqrt(2.0)], np.float32)], f"{p}_d")], f"{p}_erf")
        e = node("Add", [e, const(f"{p}_one", [1.0], np.float32)], f"{p}_erf1")
        h = node("Mul", [node("Mul", [h, e], f"{p}_hm"), const(f"{p}_half", [0.5], np.float32)], f"{p}_gelu")
        ff = linear(h, FFN, HIDDEN, f"{p}_ff2")
        x = layer_norm(node("Add", [x, ff], f"{p}_res2"), f"{p}_ln2")
    batch, sequence = ("batch", "sequence") if dynamic else (1, SEQ)
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, sequence])]
    if exported:
        inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, sequence]))
    graph = helper.make_graph(
        nodes,
        "bert_dynamic" if dynamic else "bert_exported" if exported else "bert_encoder",
        inputs,
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, sequence, HIDDEN])],
        initializer=inits,
    )
    # IR version 8: what onnxruntime-web and older runtimes accept.
    opset = 14 if exported else 17
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return feeds_for(exported, seq)


def feeds_for(exported, seq=SEQ):
    """Seeded token ids (and, for the exported form, a mask whose last
    quarter of the positions is padding) for a batch of one."""
    feeds = {"input_ids": np.random.default_rng(seq).integers(0, VOCAB, size=(1, seq)).astype(np.int64)}
    if seq == SEQ:
        # The feeds every earlier version of the set used.
        feeds["input_ids"] = np.random.default_rng(1).integers(0, VOCAB, size=(1, SEQ)).astype(np.int64)
    if exported:
        mask = np.ones((1, seq), np.int64)
        mask[:, seq * 3 // 4 :] = 0
        feeds["attention_mask"] = mask
    return feeds
