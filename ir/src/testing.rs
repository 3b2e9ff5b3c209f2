//! Small models for tests, snapshots and benchmarks: one node over f32
//! operands, each a model input or a constant; a pointwise chain as
//! exporters write one ([`exported_chain`]); and contractions with the
//! tails they write after them ([`exported_epilogues`]).

use crate::graph::{Graph, Model, Node, ValueId, ValueType};
use crate::{Attr, Attrs, DType, Shape, Tensor};

/// One operand of [`one_node`].
pub enum Operand<'a> {
    /// A model input of this shape.
    Input(&'a [usize]),
    /// A constant (an initializer).
    Constant(Tensor),
}

/// A model of one `op` node (opset 21) over `operands`, with one output
/// `out` whose type is left for shape inference.
pub fn one_node(op: &str, operands: Vec<Operand>, attrs: Attrs) -> Model {
    let mut g = Graph::new("one_node");
    let mut ids = Vec::new();
    for (i, operand) in operands.into_iter().enumerate() {
        let (ty, constant) = match operand {
            Operand::Input(shape) => (ValueType::new(DType::F32, Shape::known(shape)), None),
            Operand::Constant(t) => (ValueType::of(&t), Some(t)),
        };
        let v = g.add_value(format!("in{i}"), ty).expect("fresh names");
        match constant {
            Some(t) => {
                g.constants.insert(v, t);
            }
            None => g.inputs.push(v),
        }
        ids.push(Some(v));
    }
    let out = g
        .add_value("out", ValueType::default())
        .expect("fresh name");
    g.add_node(Node {
        name: op.to_lowercase(),
        op: op.into(),
        domain: String::new(),
        inputs: ids,
        outputs: vec![Some(out)],
        attrs,
    })
    .expect("one node");
    g.outputs.push(out);
    Model {
        graph: g,
        opsets: [(String::new(), 21)].into_iter().collect(),
        ir_version: 10,
        producer: "wpc-testing".into(),
        external_data: Vec::new(),
        dim_ranges: Default::default(),
        counted_dims: Default::default(),
    }
}

/// Attributes of int lists.
pub fn ints(pairs: &[(&str, Vec<i64>)]) -> Attrs {
    let mut a = Attrs::default();
    for (k, v) in pairs {
        a.insert(*k, Attr::Ints(v.clone()));
    }
    a
}
/// A model input of `shape` (f32) added to `g`.
fn f32_input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
    let v = g
        .add_value(name, ValueType::new(DType::F32, Shape::known(shape)))
        .unwrap();
    g.inputs.push(v);
    v
}

/// A scalar f32 constant added to `g`.
fn scalar(g: &mut Graph, v: f32) -> ValueId {
    let t = Tensor::scalar(v);
    let id = g.add_fresh_value("c", ValueType::of(&t));
    g.constants.insert(id, t);
    id
}

/// A default-domain `op` node over `ins` added to `g`; its one output,
/// named after the op, is returned.
fn add_op(g: &mut Graph, op: &str, ins: &[ValueId], attrs: Attrs) -> ValueId {
    let out = g.add_fresh_value(&op.to_lowercase(), ValueType::default());
    let name = g.value(out).name.clone();
    g.add_node(Node {
        name,
        op: op.into(),
        domain: String::new(),
        inputs: ins.iter().map(|&v| Some(v)).collect(),
        outputs: vec![Some(out)],
        attrs,
    })
    .unwrap();
    out
}

/// `g` as an opset-21 model.
fn model(graph: Graph) -> Model {
    Model {
        graph,
        opsets: std::collections::BTreeMap::from([(String::new(), 21)]),
        ir_version: 10,
        producer: "test".into(),
        external_data: Vec::new(),
        dim_ranges: Default::default(),
        counted_dims: Default::default(),
    }
}

/// A constant of `t` added to `g`.
fn constant(g: &mut Graph, t: Tensor) -> ValueId {
    let id = g.add_fresh_value("k", ValueType::of(&t));
    g.constants.insert(id, t);
    id
}

/// An attention-like block over symbolic sizes `b` (batch) and `s`
/// (sequence), with a hidden size of 8, for the dynamic-size tests: every
/// op whose WebGPU kernel reads dynamic sizes at run time. Over token ids
/// `ids: [b, s]` (int64) and `x: [b, s, 8]`:
///
/// `h = (x + table[ids]) · W`, `p = softmax(h · hᵀ)` over the keys, `c =
/// p · h`, `y = relu(c - mean(c))`; outputs `y + bias` with `bias`
/// expanded to `Shape(x)`, `y[:, 1:, :]` (empty where `s` is 1), and
/// `y`'s two halves along the hidden size (a Split) joined in swapped
/// order along the sequence (a Concat: `[b, 2s, 4]`), `y`'s mean over the
/// sequence (`[b, 1, 8]`) and its sum over the batch (`[1, s, 8]`: rows
/// of a dynamic length). Types are left for shape inference.
pub fn dynamic_block() -> Model {
    const H: usize = 8;
    let values = |n: usize, k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + k * 11) % 17) as f32 / 17.0 - 0.5)
            .collect()
    };
    let mut g = Graph::new("dynamic_block");
    let sym = |s: &str| crate::Dim::Symbol(s.into());
    let ids = g
        .add_value(
            "ids",
            ValueType::new(DType::I64, Shape(Some(vec![sym("b"), sym("s")]))),
        )
        .unwrap();
    let x = g
        .add_value(
            "x",
            ValueType::new(
                DType::F32,
                Shape(Some(vec![sym("b"), sym("s"), crate::Dim::Known(H)])),
            ),
        )
        .unwrap();
    g.inputs = vec![ids, x];
    let table = constant(&mut g, Tensor::from_vec(vec![10, H], values(10 * H, 1)));
    let w = constant(&mut g, Tensor::from_vec(vec![H, H], values(H * H, 2)));
    let emb = add_op(&mut g, "Gather", &[table, ids], Attrs::default());
    let sum = add_op(&mut g, "Add", &[x, emb], Attrs::default());
    let h = add_op(&mut g, "MatMul", &[sum, w], Attrs::default());
    let ht = add_op(&mut g, "Transpose", &[h], ints(&[("perm", vec![0, 2, 1])]));
    let scores = add_op(&mut g, "MatMul", &[h, ht], Attrs::default());
    let mut axis = Attrs::default();
    axis.insert("axis", Attr::Int(-1));
    let p = add_op(&mut g, "Softmax", &[scores], axis);
    let c = add_op(&mut g, "MatMul", &[p, h], Attrs::default());
    let mean = add_op(&mut g, "ReduceMean", &[c], ints(&[("axes", vec![-1])]));
    let centred = add_op(&mut g, "Sub", &[c, mean], Attrs::default());
    let y = add_op(&mut g, "Relu", &[centred], Attrs::default());
    let bias = constant(&mut g, Tensor::from_vec(vec![H], values(H, 3)));
    let shape = add_op(&mut g, "Shape", &[x], Attrs::default());
    let expanded = add_op(&mut g, "Expand", &[bias, shape], Attrs::default());
    let out = add_op(&mut g, "Add", &[y, expanded], Attrs::default());
    let i64s = |g: &mut Graph, v: i64| constant(g, Tensor::i64s(vec![1], vec![v]));
    let (start, end, axis1) = (i64s(&mut g, 1), i64s(&mut g, i64::MAX), i64s(&mut g, 1));
    let tail = add_op(&mut g, "Slice", &[y, start, end, axis1], Attrs::default());
    let halves = constant(&mut g, Tensor::i64s(vec![2], vec![4, 4]));
    let (first, second) = (
        g.add_fresh_value("first", ValueType::default()),
        g.add_fresh_value("second", ValueType::default()),
    );
    let mut axis2 = Attrs::default();
    axis2.insert("axis", Attr::Int(2));
    g.add_node(Node {
        name: "split".into(),
        op: "Split".into(),
        domain: String::new(),
        inputs: vec![Some(y), Some(halves)],
        outputs: vec![Some(first), Some(second)],
        attrs: axis2,
    })
    .unwrap();
    let mut along_sequence = Attrs::default();
    along_sequence.insert("axis", Attr::Int(1));
    let swapped = add_op(&mut g, "Concat", &[second, first], along_sequence);
    let pooled = add_op(&mut g, "ReduceMean", &[y], ints(&[("axes", vec![1])]));
    let over_batch = add_op(&mut g, "ReduceSum", &[y], ints(&[("axes", vec![0])]));
    g.outputs = vec![out, tail, swapped, pooled, over_batch];
    let mut m = model(g);
    m.opsets.insert(String::new(), 17);
    m
}

/// An image block with batch, height and width symbolic (`n`, `h`, `w`)
/// over `img: [n, 3, h, w]`: `c = relu(conv3x3(img, pad 1))` (4
/// channels), then `maxpool3x3(c, stride 2, pad 1)` and a 2×2 stride-2
/// average pool of that (pads excluded), a 3×3 stride-1 average pool
/// of `c` counting its pads, and a decoder's 3×3 stride-2 transposed
/// convolution of the max pool (pad 1, output padding 1: twice its size,
/// 2 channels), and the image padded in each of Pad's four modes. Types
/// are left for shape inference.
pub fn dynamic_image_block() -> Model {
    let mut g = Graph::new("dynamic_image_block");
    let sym = |s: &str| crate::Dim::Symbol(s.into());
    let img = g
        .add_value(
            "img",
            ValueType::new(
                DType::F32,
                Shape(Some(vec![
                    sym("n"),
                    crate::Dim::Known(3),
                    sym("h"),
                    sym("w"),
                ])),
            ),
        )
        .unwrap();
    g.inputs = vec![img];
    let weights = (0..4 * 3 * 9)
        .map(|i| ((i * 29 + 7) % 19) as f32 / 19.0 - 0.45)
        .collect();
    let w = constant(&mut g, Tensor::from_vec(vec![4, 3, 3, 3], weights));
    let conv = add_op(&mut g, "Conv", &[img, w], ints(&[("pads", vec![1; 4])]));
    let c = add_op(&mut g, "Relu", &[conv], Attrs::default());
    let window = |k: i64, s: i64, p: i64| {
        ints(&[
            ("kernel_shape", vec![k, k]),
            ("strides", vec![s, s]),
            ("pads", vec![p; 4]),
        ])
    };
    let max = add_op(&mut g, "MaxPool", &[c], window(3, 2, 1));
    let avg = add_op(&mut g, "AveragePool", &[max], window(2, 2, 0));
    let mut counting = window(3, 1, 1);
    counting.insert("count_include_pad", Attr::Int(1));
    let smooth = add_op(&mut g, "AveragePool", &[c], counting);
    let taps = (0..4 * 2 * 9)
        .map(|i| ((i * 17 + 3) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let wt = constant(&mut g, Tensor::from_vec(vec![4, 2, 3, 3], taps));
    let mut upsampling = ints(&[("strides", vec![2, 2]), ("pads", vec![1; 4])]);
    upsampling.insert("output_padding", Attr::Ints(vec![1, 1]));
    let up = add_op(&mut g, "ConvTranspose", &[max, wt], upsampling);
    g.outputs = vec![avg, smooth, up];
    // The image padded in every mode: 1 row above, 2 below, 3 columns
    // left and 1 right; constant mode instead adds a channel of 0.5
    // before, crops a row above and adds 2 below (whole rows copied).
    for (mode, pads) in [
        ("constant", [0, 1, -1, 0, 0, 0, 2, 0]),
        ("edge", [0, 0, 1, 3, 0, 0, 2, 1]),
        ("reflect", [0, 0, 1, 3, 0, 0, 2, 1]),
        ("wrap", [0, 0, 1, 3, 0, 0, 2, 1]),
    ] {
        let pads = constant(&mut g, Tensor::i64s(vec![8], pads.to_vec()));
        let mut a = Attrs::default();
        a.insert("mode", Attr::String(mode.into()));
        let value = constant(&mut g, Tensor::from_vec(vec![], vec![0.5f32]));
        let ins = match mode {
            "constant" => vec![img, pads, value],
            _ => vec![img, pads],
        };
        let padded = add_op(&mut g, "Pad", &ins, a);
        g.outputs.push(padded);
    }
    let mut m = model(g);
    m.opsets.insert(String::new(), 19);
    m
}

/// Recurrent layers over a symbolic sequence `s` and batch `b`, for the
/// dynamic-size tests: over `x: [s, b, 3]` and `h0: [2, b, 5]`, a
/// bidirectional GRU (reset gate before the recurrent product, from
/// `h0`; Y and Y_h), a
/// reverse RNN (Y) and an LSTM with peepholes (Y and Y_c), hidden size 5,
/// seeded weights. Types are left for shape inference.
pub fn dynamic_recurrent_block() -> Model {
    const H: usize = 5;
    let mut g = Graph::new("dynamic_recurrent_block");
    let sym = |s: &str| crate::Dim::Symbol(s.into());
    let known = crate::Dim::Known;
    let f32s = |g: &mut Graph, name: &str, dims: Vec<crate::Dim>| {
        g.add_value(name, ValueType::new(DType::F32, Shape(Some(dims))))
            .unwrap()
    };
    let x = f32s(&mut g, "x", vec![sym("s"), sym("b"), known(3)]);
    let h0 = f32s(&mut g, "h0", vec![known(2), sym("b"), known(H)]);
    g.inputs = vec![x, h0];
    let mut seed = 0;
    let mut weights = |g: &mut Graph, shape: Vec<usize>| {
        seed += 1;
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| ((i * 31 + seed * 17) % 23) as f32 / 23.0 - 0.5)
            .collect();
        Some(constant(g, Tensor::from_vec(shape, v)))
    };
    let layer = |g: &mut Graph, op: &str, ins: Vec<Option<ValueId>>, outs: usize, attrs: Attrs| {
        let outputs: Vec<ValueId> = (0..outs)
            .map(|k| g.add_fresh_value(&format!("{}_{k}", op.to_lowercase()), ValueType::default()))
            .collect();
        g.add_node(Node {
            name: op.to_lowercase(),
            op: op.into(),
            domain: String::new(),
            inputs: ins,
            outputs: outputs.iter().map(|&v| Some(v)).collect(),
            attrs,
        })
        .unwrap();
        outputs
    };
    let hidden = |direction: &str| {
        let mut a = Attrs::default();
        a.insert("hidden_size", Attr::Int(H as i64));
        a.insert("direction", Attr::String(direction.into()));
        a
    };
    let gru_attrs = hidden("bidirectional");
    let (w, r, bias) = (
        weights(&mut g, vec![2, 3 * H, 3]),
        weights(&mut g, vec![2, 3 * H, H]),
        weights(&mut g, vec![2, 6 * H]),
    );
    let gru = layer(
        &mut g,
        "GRU",
        vec![Some(x), w, r, bias, None, Some(h0)],
        2,
        gru_attrs,
    );
    let (w, r) = (
        weights(&mut g, vec![1, H, 3]),
        weights(&mut g, vec![1, H, H]),
    );
    let rnn = layer(&mut g, "RNN", vec![Some(x), w, r], 1, hidden("reverse"));
    let (w, r, bias, peep) = (
        weights(&mut g, vec![1, 4 * H, 3]),
        weights(&mut g, vec![1, 4 * H, H]),
        weights(&mut g, vec![1, 8 * H]),
        weights(&mut g, vec![1, 3 * H]),
    );
    let lstm_ins = vec![Some(x), w, r, bias, None, None, None, peep];
    let lstm = layer(&mut g, "LSTM", lstm_ins, 3, hidden("forward"));
    g.outputs = vec![gru[0], gru[1], rnn[0], lstm[0], lstm[2]];
    let mut m = model(g);
    m.opsets.insert(String::new(), 17);
    m
}

/// `r = Exp(x); z = Sub(r, y); out = Mul(z, r)` (or `Mul(z, y)` without
/// `reread`) over `x, y: [n]`: a chain whose intermediates die at known
/// nodes, for the in-place tests. Nodes are named after their ops
/// (`exp`, `sub`, `mul`); types are left for shape inference.
pub fn exp_sub_mul(n: usize, reread: bool) -> Model {
    let mut g = Graph::new("in_place");
    let x = f32_input(&mut g, "x", &[n]);
    let y = f32_input(&mut g, "y", &[n]);
    let r = add_op(&mut g, "Exp", &[x], Attrs::default());
    let z = add_op(&mut g, "Sub", &[r, y], Attrs::default());
    let last = if reread { r } else { y };
    let out = add_op(&mut g, "Mul", &[z, last], Attrs::default());
    g.outputs = vec![out];
    model(g)
}

/// `t = gelu(x) + y; t * clip(t + 3, 0, 6) / 6` over `x: [rows, cols]`,
/// `y: [cols]`, every op a node of its own and every constant a scalar,
/// as exporters write them: what fusion makes one kernel of. Types are
/// left for shape inference.
pub fn exported_chain(rows: usize, cols: usize) -> Model {
    let mut g = Graph::new("chain");
    let x = f32_input(&mut g, "x", &[rows, cols]);
    let y = f32_input(&mut g, "y", &[cols]);
    let node = |g: &mut Graph, op: &str, ins: &[ValueId]| add_op(g, op, ins, Attrs::default());
    let (sqrt2, one, half) = (
        scalar(&mut g, 2f32.sqrt()),
        scalar(&mut g, 1.0),
        scalar(&mut g, 0.5),
    );
    let d = node(&mut g, "Div", &[x, sqrt2]);
    let e = node(&mut g, "Erf", &[d]);
    let e = node(&mut g, "Add", &[e, one]);
    let m = node(&mut g, "Mul", &[x, e]);
    let gelu = node(&mut g, "Mul", &[m, half]);
    let t = node(&mut g, "Add", &[gelu, y]);
    let (three, zero, six) = (
        scalar(&mut g, 3.0),
        scalar(&mut g, 0.0),
        scalar(&mut g, 6.0),
    );
    let s = node(&mut g, "Add", &[t, three]);
    let c = node(&mut g, "Clip", &[s, zero, six]);
    let p = node(&mut g, "Mul", &[t, c]);
    let out = node(&mut g, "Div", &[p, six]);
    g.outputs = vec![out];
    model(g)
}

/// Contractions with the pointwise tails exporters put after them, every
/// op a node of its own: what fusion makes one kernel with an epilogue
/// each of. Over `img: [1, c, h, w]` and `x: [rows, k]`:
///
/// * a ResNet block's end: `relu(conv3x3(img) + bias + img)` (a residual
///   shaped like the output);
/// * an unfolded batch norm and a HardSwish written out after a 1×1 conv:
///   `t = conv1x1(·) * scale[c,1,1] + shift[c,1,1]; t * clip(t+3,0,6) / 6`
///   (per-channel operands);
/// * a linear layer and its erf-GELU: `gelu(x·W + bias[n])` (a per-column
///   operand, a tail with no vector form);
/// * `tanh(Gemm(·, W2, bias, transB=1))`.
///
/// Weights are fixed pseudo-random values; types are left for shape
/// inference.
pub fn exported_epilogues(c: usize, h: usize, w: usize, rows: usize, k: usize, n: usize) -> Model {
    let mut g = Graph::new("epilogues");
    let img = f32_input(&mut g, "img", &[1, c, h, w]);
    let x = f32_input(&mut g, "x", &[rows, k]);
    let mut seed = 0u32;
    let mut constant = |g: &mut Graph, shape: &[usize], scale: f32| {
        let len: usize = shape.iter().product();
        let data = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((seed >> 16) % 2001) as f32 / 1000.0 - 1.0
            })
            .map(|v| v * scale)
            .collect();
        let t = Tensor::from_vec(shape.to_vec(), data);
        let id = g.add_fresh_value("c", ValueType::of(&t));
        g.constants.insert(id, t);
        id
    };
    let node = add_op;
    let plain = Attrs::default;
    let w1 = constant(&mut g, &[c, c, 3, 3], 0.3);
    let b1 = constant(&mut g, &[c], 0.5);
    let mut pads = Attrs::default();
    pads.insert("pads", Attr::Ints(vec![1, 1, 1, 1]));
    let conv = node(&mut g, "Conv", &[img, w1, b1], pads);
    let residual = node(&mut g, "Add", &[conv, img], plain());
    let block = node(&mut g, "Relu", &[residual], plain());
    let w2 = constant(&mut g, &[c, c, 1, 1], 0.5);
    let conv = node(&mut g, "Conv", &[block, w2], plain());
    let (scale, shift) = (
        constant(&mut g, &[c, 1, 1], 1.0),
        constant(&mut g, &[c, 1, 1], 1.0),
    );
    let t = node(&mut g, "Mul", &[conv, scale], plain());
    let t = node(&mut g, "Add", &[t, shift], plain());
    let (three, zero, six) = (
        scalar(&mut g, 3.0),
        scalar(&mut g, 0.0),
        scalar(&mut g, 6.0),
    );
    let s = node(&mut g, "Add", &[t, three], plain());
    let s = node(&mut g, "Clip", &[s, zero, six], plain());
    let s = node(&mut g, "Mul", &[t, s], plain());
    let swish = node(&mut g, "Div", &[s, six], plain());
    let w3 = constant(&mut g, &[k, n], 0.4);
    let b3 = constant(&mut g, &[n], 0.5);
    let mm = node(&mut g, "MatMul", &[x, w3], plain());
    let hidden = node(&mut g, "Add", &[mm, b3], plain());
    let (sqrt2, one, half) = (
        scalar(&mut g, 2f32.sqrt()),
        scalar(&mut g, 1.0),
        scalar(&mut g, 0.5),
    );
    let d = node(&mut g, "Div", &[hidden, sqrt2], plain());
    let e = node(&mut g, "Erf", &[d], plain());
    let e = node(&mut g, "Add", &[e, one], plain());
    let m = node(&mut g, "Mul", &[hidden, e], plain());
    let gelu = node(&mut g, "Mul", &[m, half], plain());
    let w4 = constant(&mut g, &[n, n], 0.4);
    let b4 = constant(&mut g, &[n], 0.5);
    let mut trans_b = Attrs::default();
    trans_b.insert("transB", Attr::Int(1));
    let gemm = node(&mut g, "Gemm", &[gelu, w4, b4], trans_b);
    let out = node(&mut g, "Tanh", &[gemm], plain());
    g.outputs = vec![swish, out];
    model(g)
}
