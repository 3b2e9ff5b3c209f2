//! `wpc inspect`: a human-readable summary of a model.

use std::collections::BTreeMap;
use std::fmt::Write;

use wpc_codegen_wasm::Support;
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

/// The initializers and Constant-node values of `g` and its subgraphs.
fn parameters<'g>(
    g: &'g Graph,
    initializers: &mut Vec<&'g wpc_ir::Tensor>,
    constant_nodes: &mut Vec<&'g wpc_ir::Tensor>,
) {
    initializers.extend(g.constants.values());
    for id in g.node_ids() {
        let n = g.node(id);
        if n.op == "Constant"
            && n.domain.is_empty()
            && let Some(wpc_ir::Attr::Tensor(t)) = n.attrs.get("value")
        {
            constant_nodes.push(t);
        }
        for sub in n.attrs.subgraphs() {
            parameters(sub, initializers, constant_nodes);
        }
    }
}

fn node_name(name: &str) -> &str {
    if name.is_empty() { "(unnamed)" } else { name }
}

/// Nodes of `g` (subgraphs included) whose op is registered but which
/// `runs(domain, op)` says a backend cannot run, as (node, op).
fn bad_nodes(g: &Graph, runs: &dyn Fn(&str, &str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for id in g.node_ids() {
        let n = g.node(id);
        if wpc_ir::ops::lookup(&n.domain, &n.op).is_some() && !runs(&n.domain, &n.op) {
            out.push((node_name(&n.name).to_string(), n.op.clone()));
        }
        for sub in n.attrs.subgraphs() {
            out.extend(bad_nodes(sub, runs));
        }
    }
    out
}

/// `MatMulInteger x3, DynamicQuantizeLinear x1`.
fn histogram(nodes: &[(String, String)]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, op) in nodes {
        *counts.entry(op).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(op, n)| format!("{op} x{n}")).collect();
    parts.join(", ")
}

/// One backend's line: every known node runs, or which do not.
fn backend_line(backend: &str, missing: &[(String, String)]) -> String {
    if missing.is_empty() {
        return format!("{backend:<10} every known op runs");
    }
    let first: Vec<String> = missing
        .iter()
        .take(3)
        .map(|(node, op)| format!("'{node}' ({op})"))
        .collect();
    format!(
        "{backend:<10} {} nodes have no kernel ({}), e.g. {}: wpc compile leaves this variant out or fails",
        missing.len(),
        histogram(missing),
        first.join(", ")
    )
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
    // Some exporters write every weight as a Constant node, not an
    // initializer (Silero VAD keeps its weights in If branches): both
    // count, subgraphs included.
    let (mut initializers, mut constant_nodes) = (Vec::new(), Vec::new());
    parameters(g, &mut initializers, &mut constant_nodes);
    let (params, bytes) = initializers
        .iter()
        .chain(&constant_nodes)
        .fold((0, 0), |(n, b), t| {
            (n + t.len(), b + t.len() * t.dtype().size())
        });
    let _ = writeln!(
        s,
        "parameters: {params} in {} initializers and {} Constant nodes ({:.2} MB)",
        initializers.len(),
        constant_nodes.len(),
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
        let _ = writeln!(s, "unknown ops: none (every op is in wpc's registry)");
    } else {
        let _ = writeln!(s, "unknown ops ({} nodes run nowhere):", bad.len());
        for u in &bad {
            let domain = if u.domain.is_empty() {
                String::new()
            } else {
                format!("{}.", u.domain)
            };
            let _ = writeln!(s, "  {:<28} {domain}{}", node_name(&u.node), u.op);
        }
    }
    // Backends see the graph after constant folding (a ConstantOfShape of
    // a constant shape never reaches them); a model the passes reject is
    // shown as it is.
    let mut optimized = model.clone();
    let g = match wpc_passes::optimize(&mut optimized) {
        Ok(_) => &optimized.graph,
        Err(_) => g,
    };
    let _ = writeln!(
        s,
        "backends (after constant folding; by op, a kernel may still refuse a dtype or attribute):"
    );
    let _ = writeln!(
        s,
        "  {}",
        backend_line("reference", &bad_nodes(g, &|_, _| true))
    );
    let gpu = bad_nodes(g, &|d, op| wpc_codegen_wgsl::ops::lowering(d, op).is_some());
    let _ = writeln!(s, "  {}", backend_line("webgpu", &gpu));
    let wasm = bad_nodes(g, &|d, op| {
        wpc_codegen_wasm::support(d, op) != Support::None
    });
    let _ = writeln!(s, "  {}", backend_line("wasm", &wasm));
    let on_reference = bad_nodes(g, &|d, op| {
        wpc_codegen_wasm::support(d, op) != Support::Reference
    });
    if !on_reference.is_empty() {
        let _ = writeln!(
            s,
            "    wasm runs {} nodes on the slower reference kernels (reference.wasm): {}",
            on_reference.len(),
            histogram(&on_reference)
        );
    }
    s
}
