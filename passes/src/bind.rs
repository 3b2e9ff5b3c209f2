//! Preparing a model for compilation: fixing inputs to values
//! ([`freeze_inputs`]) and to shapes ([`bind_input_shapes`]),
//! and finding the inputs that must be fixed ([`steering_inputs`]). These
//! run before [`crate::optimize`], which then folds what they made known.
//! Which shapes to bind (from `--dim` and `--input-shape`, checked
//! against the model) is the caller's to work out.

use std::collections::{HashMap, HashSet};

use wpc_ir::{Dim, Error, Model, Result, Shape, Tensor, ValueId, ValueType};

/// Turns the named model inputs into constants.
pub fn freeze_inputs(model: &mut Model, frozen: &HashMap<String, Tensor>) -> Result<()> {
    let g = &mut model.graph;
    for (name, t) in frozen {
        let v = g
            .inputs
            .iter()
            .copied()
            .find(|&v| g.value(v).name == *name)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "cannot freeze '{name}': the model has no such input"
                ))
            })?;
        g.inputs.retain(|&i| i != v);
        g.value_mut(v).ty = ValueType::of(t);
        g.constants.insert(v, t.clone());
    }
    Ok(())
}

/// The model inputs whose values steer kernels (see
/// [`wpc_ir::ops::OpDef::steering`]), by name: those feeding a
/// steering slot directly, and those a steering value is computed from
/// (a Pad's pads derived from a `shape` input, a Range limit cast from an
/// int input). `Shape` and `Size` read only their input's shape, so the
/// walk back stops there.
pub fn steering_inputs(model: &Model) -> Vec<String> {
    let g = &model.graph;
    let mut pending: Vec<ValueId> = Vec::new();
    for n in g.node_ids() {
        let node = g.node(n);
        for (i, v) in node.inputs.iter().enumerate() {
            if let Some(v) = v
                && wpc_ir::ops::is_steering_input(&node.domain, &node.op, i)
            {
                pending.push(*v);
            }
        }
    }
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    while let Some(v) = pending.pop() {
        if !seen.insert(v) {
            continue;
        }
        if g.inputs.contains(&v) {
            names.push(g.value(v).name.clone());
        }
        if let Some(n) = g.producer(v) {
            let node = g.node(n);
            if !matches!(node.op.as_str(), "Shape" | "Size") {
                pending.extend(node.inputs.iter().flatten());
            }
        }
    }
    // Report in the model's input order, whatever order the walk took.
    g.inputs
        .iter()
        .map(|&v| g.value(v).name.clone())
        .filter(|n| names.contains(n))
        .collect()
}

/// Gives each model input named in `shapes` that shape (sizes, and the
/// symbols left to run time).
pub fn bind_input_shapes(model: &mut Model, shapes: &HashMap<String, Vec<Dim>>) {
    let g = &mut model.graph;
    for v in g.inputs.clone() {
        if let Some(shape) = shapes.get(&g.value(v).name) {
            g.value_mut(v).ty.shape = Shape(Some(shape.clone()));
        }
    }
}
