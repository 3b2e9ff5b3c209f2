//! `wpc bench`: times a bundle's WebGPU variant, the GEMM kernel on
//! square matrices against a stated peak, and the 4-bit matvec kernel
//! against the adapter's copy bandwidth.
//!
//! Timing covers whole inferences as an application sees them through the
//! native runtime: record every dispatch into one command buffer, submit,
//! wait for the GPU. Inputs are uploaded once; outputs are not read back
//! (reading back is a separate, size-bound cost). Reported numbers are
//! medians over the iterations after warm-up runs.

use std::time::{Duration, Instant};

use anyhow::Result;
use wpc_ir::graph::{Graph, Model, Node, ValueType};
use wpc_ir::ops::params::MatMulNBits;
use wpc_ir::ops::quant::MICROSOFT;
use wpc_ir::packed::Layout;
use wpc_ir::{DType, Shape, Tensor};
use wpc_runtime::Bundle;
use wpc_runtime::webgpu::{Gpu, Session};

/// Median seconds of `iterations` timed runs after `warmup` untimed ones.
pub fn time_session(
    session: &Session,
    inputs: &[Tensor],
    warmup: usize,
    iterations: usize,
) -> Result<Duration> {
    session.run(inputs)?;
    for _ in 0..warmup {
        session.execute(false)?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let t = Instant::now();
        session.execute(false)?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Seeded inputs of the bundle's compiled shapes, floats in [-1, 1).
pub fn bundle_inputs(bundle: &Bundle) -> Vec<Tensor> {
    let mut state = 0x9e37_79b9_u32;
    bundle
        .manifest
        .inputs
        .iter()
        .map(|t| {
            let shape: Vec<usize> = t.bound.iter().map(|&d| d as usize).collect();
            let dtype = DType::ALL
                .into_iter()
                .find(|d| d.name() == t.dtype)
                .unwrap_or(DType::F32);
            let n = shape.iter().product();
            let values = (0..n).map(|_| {
                let state = xorshift(&mut state);
                if dtype.is_float() {
                    (state >> 8) as f64 / (1u64 << 23) as f64 - 1.0
                } else {
                    f64::from(state % 4)
                }
            });
            Tensor::from_f64s(dtype, shape, values.collect::<Vec<_>>())
        })
        .collect()
}

/// The next of a xorshift32 sequence: cheap seeded data.
fn xorshift(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

/// A benchmark model of graph `g`, over the default domain's opset 21 and
/// onnxruntime's `com.microsoft` ops.
fn bench_model(g: Graph) -> Model {
    Model {
        graph: g,
        opsets: [(String::new(), 21), (MICROSOFT.to_string(), 1)]
            .into_iter()
            .collect(),
        ir_version: 10,
        producer: "wpc bench".into(),
        external_data: Vec::new(),
        dim_ranges: Default::default(),
        counted_dims: Default::default(),
    }
}

/// A model computing `A x B` for n x n matrices, B a constant weight.
pub fn matmul_model(n: usize) -> Model {
    let mut g = Graph::new(format!("matmul{n}"));
    let a = g
        .add_value("a", ValueType::new(DType::F32, Shape::known(&[n, n])))
        .expect("fresh name");
    let b = g
        .add_value("b", ValueType::new(DType::F32, Shape::known(&[n, n])))
        .expect("fresh name");
    let y = g
        .add_value("y", ValueType::new(DType::F32, Shape::known(&[n, n])))
        .expect("fresh name");
    g.inputs.push(a);
    g.constants.insert(
        b,
        Tensor::from_vec(
            vec![n, n],
            (0..n * n)
                .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
                .collect::<Vec<_>>(),
        ),
    );
    g.add_node(Node {
        name: "matmul".into(),
        op: "MatMul".into(),
        domain: String::new(),
        inputs: vec![Some(a), Some(b)],
        outputs: vec![Some(y)],
        attrs: Default::default(),
    })
    .expect("valid node");
    g.outputs.push(y);
    bench_model(g)
}

/// The bits and block of [`matvec_model`]'s weights: onnxruntime's 4-bit
/// `MatMulNBits` export (what transformers.js q4 decoders ship).
const MATVEC_BITS: u32 = 4;
const MATVEC_BLOCK: usize = 32;

/// Weight bytes [`matvec_model`] reads per inference, at least: far more
/// than any GPU's last-level cache, so the weights come from memory.
const MATVEC_BYTES: usize = 512 << 20;

/// A decoder's token step in miniature: a `[1, n]` vector through a chain
/// of `n x n` 4-bit `MatMulNBits` layers (block 32, float32 scales, packed
/// zero points; random codes), enough layers to read [`MATVEC_BYTES`].
/// Returns the model and the weight bytes (codes, scales, zero points)
/// one inference reads.
pub fn matvec_model(n: usize) -> (Model, usize) {
    let layout = Layout::blocked(n, n, MATVEC_BITS, MATVEC_BLOCK);
    let blocks = layout.blocks();
    let zero_row = layout.zero_point_row_bytes();
    let layer_bytes = layout.code_bytes() + n * blocks * 4 + n * zero_row;
    let layers = MATVEC_BYTES.div_ceil(layer_bytes);
    let mut g = Graph::new(format!("matvec{n}"));
    let vector = ValueType::new(DType::F32, Shape::known(&[1, n]));
    let mut x = g.add_value("x", vector.clone()).expect("fresh name");
    g.inputs.push(x);
    let mut state = 0x2545_f491_u32;
    let mut random_bytes =
        |count: usize| -> Vec<u8> { (0..count).map(|_| xorshift(&mut state) as u8).collect() };
    // About unit gain per layer: codes less their zero points spread over
    // ±2^bits/2, summed over n.
    let scale = 1.0 / (4.0 * (n as f32).sqrt());
    let params = MatMulNBits {
        k: n,
        n,
        bits: MATVEC_BITS,
        block_size: MATVEC_BLOCK,
    };
    for l in 0..layers {
        let constant =
            |g: &mut Graph, what: &str, t: Tensor| g.add_constant(&format!("layer{l}.{what}"), t);
        let codes = Tensor::from_vec(
            vec![n, blocks, layout.row_bytes / blocks],
            random_bytes(layout.code_bytes()),
        );
        let codes = constant(&mut g, "codes", codes);
        let scales = constant(
            &mut g,
            "scales",
            Tensor::from_vec(vec![n, blocks], vec![scale; n * blocks]),
        );
        let zeros = Tensor::from_vec(vec![n, zero_row], random_bytes(n * zero_row));
        let zeros = constant(&mut g, "zero_points", zeros);
        let y = g
            .add_value(format!("y{l}"), vector.clone())
            .expect("fresh name");
        g.add_node(Node {
            name: format!("layer{l}"),
            op: "MatMulNBits".into(),
            domain: MICROSOFT.into(),
            inputs: vec![Some(x), Some(codes), Some(scales), Some(zeros)],
            outputs: vec![Some(y)],
            attrs: params.attrs(),
        })
        .expect("valid node");
        x = y;
    }
    g.outputs.push(x);
    (bench_model(g), layers * layer_bytes)
}

/// One line per measurement, for people and for `grep`.
pub fn report_model(
    gpu: &Gpu,
    bundle: &Bundle,
    label: &str,
    warmup: usize,
    iterations: usize,
) -> Result<Duration> {
    let session = Session::load(gpu, bundle)?;
    let inputs = bundle_inputs(bundle);
    let t = time_session(&session, &inputs, warmup, iterations)?;
    crate::say!(
        "{label}: {:.3} ms per inference (median of {iterations})",
        t.as_secs_f64() * 1e3
    );
    Ok(t)
}
