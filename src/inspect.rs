//! `wpc inspect`: a human-readable summary of a model.

use std::collections::BTreeMap;
use std::fmt::Write;

use wpc_ir::{Graph, Model};

/// Counts ops across a graph and its subgraphs.
fn op_histogram(g: &Graph, hist: &mut BTreeMap<String, usize>) {
    for id in g.node_ids() {
        let n = g.node(id);
        let key = if n.domain.is_empty() {
            n.op.clone()
        } else {
            format!("{}.{}", n.domain, n.op)
        };
        *hist.entry(key).or_default() += 1;
        for sub in n.attrs.subgraphs() {
            op_histogram(sub, hist);
        }
    }
}

/// The summary `wpc inspect` prints.
pub fn summary(model: &Model) -> String {
    let g = &model.graph;
    let mut s = String::new();
    let opsets: Vec<String> = model
        .opsets
        .iter()
        .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    let _ = writeln!(
        s,
        "graph:      {}",
        if g.name.is_empty() {
            "(unnamed)"
        } else {
            &g.name
        }
    );
    let _ = writeln!(
        s,
        "producer:   {}",
        if model.producer.is_empty() {
            "(unknown)"
        } else {
            &model.producer
        }
    );
    let _ = writeln!(s, "ir version: {}", model.ir_version);
    let _ = writeln!(s, "opsets:     {}", opsets.join(", "));
    let _ = writeln!(s, "inputs:");
    for &i in &g.inputs {
        let v = g.value(i);
        let _ = writeln!(
            s,
            "  {:<24} {:<8} {}",
            v.name,
            v.ty.dtype.map_or("?", |d| d.name()),
            v.ty.shape
        );
    }
    let _ = writeln!(s, "outputs:");
    for &o in &g.outputs {
        let v = g.value(o);
        let _ = writeln!(
            s,
            "  {:<24} {:<8} {}",
            v.name,
            v.ty.dtype.map_or("?", |d| d.name()),
            v.ty.shape
        );
    }
    let params: usize = g.constants.values().map(|t| t.len()).sum();
    let bytes: usize = g
        .constants
        .values()
        .map(|t| t.len() * t.dtype().size())
        .sum();
    let _ = writeln!(
        s,
        "parameters: {params} in {} initializers ({:.2} MB)",
        g.constants.len(),
        bytes as f64 / 1e6
    );
    let mut hist = BTreeMap::new();
    op_histogram(g, &mut hist);
    let _ = writeln!(s, "ops ({} nodes):", hist.values().sum::<usize>());
    for (op, n) in &hist {
        let _ = writeln!(s, "  {op:<28} {n}");
    }
    let bad = wpc_ir::ops::unsupported_nodes(model);
    if bad.is_empty() {
        let _ = writeln!(
            s,
            "unsupported: none (every op runs on the reference backend)"
        );
    } else {
        let _ = writeln!(s, "unsupported ({} nodes):", bad.len());
        for u in &bad {
            let name = if u.node.is_empty() {
                "(unnamed)"
            } else {
                &u.node
            };
            let domain = if u.domain.is_empty() {
                String::new()
            } else {
                format!("{}.", u.domain)
            };
            let _ = writeln!(s, "  {name:<28} {domain}{}", u.op);
        }
    }
    s
}
