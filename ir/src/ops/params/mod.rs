//! Typed op parameters: an op's attributes read, defaulted and validated
//! once, here, into the form every consumer uses. The reference kernels,
//! shape inference and each backend's lowering call `Params::of` and read
//! fields; none of them reads these attributes by name, so a default or a
//! validity rule cannot differ between the interpreter and a backend.
//!
//! One file per op family, as in `ops/`; this one holds the rules shared
//! across families (the single `axis`, the attributes later opsets turned
//! into inputs). Ops only the reference implements still read their
//! attributes in their family module.

mod attention;
mod elementwise;
mod matmul;
mod misc;
mod movement;
mod nn;
mod quant;
mod reduce;
mod resize;
mod rnn;

pub use attention::*;
pub use elementwise::*;
pub use matmul::*;
pub use misc::*;
pub use movement::*;
pub use nn::*;
pub use quant::*;
pub use reduce::*;
pub use resize::*;
pub use rnn::*;

use crate::attr::Attrs;
use crate::error::Result;
use crate::ops::util::norm_axis;

/// The integer-list attribute that input `index` of `op` replaced when a
/// newer opset made it an input (`Slice`'s starts before opset 10, the
/// axes of `Squeeze` and the reductions before 13 or 18, ...). Readers of
/// such an input fall back to the attribute on older models, through
/// this one table.
pub fn replaced_attribute(op: &str, index: usize) -> Option<&'static str> {
    Some(match (op, index) {
        ("Reshape", 1) => "shape",
        ("Squeeze" | "Unsqueeze", 1) => "axes",
        ("Split", 1) => "split",
        ("Slice", 1) => "starts",
        ("Slice", 2) => "ends",
        ("Slice", 3) => "axes",
        ("Pad", 1) => "pads",
        (r, 1) if r.starts_with("Reduce") => "axes",
        _ => return None,
    })
}

/// The values of integer input `index` of a node, from the input when it
/// has one (`input`), else from the attribute it replaced
/// ([`replaced_attribute`]).
pub fn ints_input(
    op: &str,
    a: &Attrs,
    index: usize,
    input: Option<Vec<i64>>,
) -> Result<Option<Vec<i64>>> {
    if input.is_some() {
        return Ok(input);
    }
    match replaced_attribute(op, index) {
        Some(name) => Ok(a.opt_ints(name)?.map(<[i64]>::to_vec)),
        None => Ok(None),
    }
}

/// The one `axis` of the ops that work along an axis, with each op's
/// default (Concat has none: it must be given), for a tensor of `rank`
/// (the output's for Concat and OneHot, which join or add along it);
/// negative axes count from the end.
pub fn axis(op: &str, a: &Attrs, rank: usize) -> Result<usize> {
    let default = match op {
        "Concat" => None,
        "Gather" | "GatherElements" | "ScatterElements" | "Split" => Some(0),
        "OneHot" | "TopK" => Some(-1),
        other => bail!("{other} has no single-axis parameter"),
    };
    match (a.opt_int("axis")?, default) {
        (Some(axis), _) | (None, Some(axis)) => norm_axis(axis, rank),
        (None, None) => bail!("{op} needs 'axis'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;

    fn attrs(list: &[(&str, Attr)]) -> Attrs {
        let mut a = Attrs::default();
        for (name, value) in list {
            a.insert(*name, value.clone());
        }
        a
    }

    #[test]
    fn defaults_follow_the_onnx_spec() {
        let none = Attrs::default();
        assert_eq!(
            Gemm::of(&none).unwrap(),
            Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: false
            }
        );
        assert_eq!(transpose_perm(&none, 3).unwrap(), [2, 1, 0]);
        let at = Attention::of(&none).unwrap();
        assert_eq!(
            (at.left_window, at.right_window, at.is_causal),
            (None, None, false)
        );
        assert!((at.scale_for(16) - 0.25).abs() < 1e-12);
        let lrn = Lrn::of(&attrs(&[("size", Attr::Int(4))])).unwrap();
        assert_eq!(
            (lrn.alpha, lrn.beta, lrn.bias, lrn.window()),
            (1e-4, 0.75, 1.0, (1, 1))
        );
    }

    #[test]
    fn invalid_parameters_are_errors_not_panics_later() {
        let e = |r: Result<()>| r.unwrap_err().to_string();
        let perm = attrs(&[("perm", Attr::Ints(vec![0, 0]))]);
        assert!(e(transpose_perm(&perm, 2).map(drop)).contains("repeated"));
        assert!(e(transpose_perm(&perm, 3).map(drop)).contains("does not match rank 3"));
        assert!(e(Lrn::of(&Attrs::default()).map(drop)).contains("positive 'size'"));
        let pool = attrs(&[("kernel_shape", Attr::Ints(vec![2, 0]))]);
        assert!(e(Pool::of(&pool, 2).map(drop)).contains("positive sizes"));
        assert!(e(Pool::of(&pool, 3).map(drop)).contains("3 positive sizes"));
        assert!(e(Pool::of(&Attrs::default(), 2).map(drop)).contains("needs 'kernel_shape'"));
        let heads = attrs(&[("q_num_heads", Attr::Int(0))]);
        assert!(e(Attention::of(&heads).map(drop)).contains("must be positive"));
        assert!(
            e(Attention::of(&Attrs::default())
                .and_then(|a| a.heads_3d())
                .map(drop))
            .contains("needs q_num_heads")
        );
        let gelu = attrs(&[("approximate", Attr::String("fast".into()))]);
        assert!(e(Elementwise::of("Gelu", &gelu).map(drop)).contains("unknown Gelu"));
        assert!(
            e(Elementwise::of("BitShift", &Attrs::default()).map(drop)).contains("LEFT or RIGHT")
        );
        assert_eq!(Elementwise::of("Relu", &Attrs::default()).unwrap(), None);
        let mode = attrs(&[("qk_matmul_output_mode", Attr::Int(7))]);
        assert!(e(Attention::of(&mode).map(drop)).contains("0 to 3"));
    }
}
