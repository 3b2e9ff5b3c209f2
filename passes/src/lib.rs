//! Graph-to-graph passes of wpc.
//!
//! Each pass is a function over a [`Model`] that reports whether it changed
//! anything, so they compose freely; [`optimize`] runs the standard pipeline
//! to a fixed point. Passes never do I/O and never look at targets: they
//! simplify the graph every backend then lowers.
//!
//! * [`shape_inference::infer_shapes`] fills in dtypes and symbolic shapes.
//! * [`const_fold::fold_constants`] evaluates nodes whose inputs are all known,
//!   with the reference interpreter (so folding means exactly what running does).
//! * [`dce::eliminate_dead_nodes`] removes nodes and constants nothing reads.
//! * [`static_shapes::fold_static_shapes`] turns `Shape`/`Size` of fully
//!   known shapes into constants.
//! * [`inline_if::inline_constant_if`] replaces an `If` whose condition is a
//!   constant with the nodes of the branch it takes.
//! * [`fold_batch_norm::fold_conv_batch_norm`] folds an inference
//!   BatchNormalization into the Conv before it.

pub mod const_fold;
pub mod dce;
pub mod fold_batch_norm;
pub mod inline_if;
pub mod shape_inference;
pub mod static_shapes;

#[cfg(test)]
mod test_util;

use wpc_ir::{Model, Result};

/// What [`optimize`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptimizeStats {
    pub folded: usize,
    pub removed: usize,
    pub inlined: usize,
}

/// Inlines constant `If`s, folds constants and removes dead nodes until
/// nothing changes, then infers shapes.
pub fn optimize(model: &mut Model) -> Result<OptimizeStats> {
    let mut stats = OptimizeStats::default();
    loop {
        let inlined = inline_if::inline_constant_if(model)?;
        let folded = const_fold::fold_constants(model)? + static_shapes::fold_static_shapes(model)?;
        let folded = folded + fold_batch_norm::fold_conv_batch_norm(model)?;
        let removed = dce::eliminate_dead_nodes(model);
        stats.inlined += inlined;
        stats.folded += folded;
        stats.removed += removed;
        if inlined + folded + removed == 0 {
            break;
        }
    }
    shape_inference::infer_shapes(model)?;
    Ok(stats)
}
