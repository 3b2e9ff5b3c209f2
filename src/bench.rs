//! `wpc bench`: times a bundle's WebGPU variant, and the GEMM kernel on
//! square matrices against a stated peak.
//!
//! Timing covers whole inferences as an application sees them through the
//! native runtime: record every dispatch into one command buffer, submit,
//! wait for the GPU. Inputs are uploaded once; outputs are not read back
//! (reading back is a separate, size-bound cost). Reported numbers are
//! medians over the iterations after warm-up runs.

use std::time::{Duration, Instant};

use anyhow::Result;
use wpc_ir::graph::{Graph, Model, Node, ValueType};
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
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
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
    Model {
        graph: g,
        opsets: [(String::new(), 21)].into_iter().collect(),
        ir_version: 10,
        producer: "wpc bench".into(),
        external_data: Vec::new(),
        dim_ranges: Default::default(),
        counted_dims: Default::default(),
    }
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
