//! Shape arithmetic over symbolic sizes.
//!
//! Exporters compute the shapes a graph reshapes and expands to from the
//! shapes of its inputs: `Shape` → `Gather` → `Unsqueeze` → `Concat` →
//! `Reshape` is how torch writes "keep the batch and sequence, split the
//! hidden size into heads". Where those sizes are symbols (`batch`,
//! `seq`), constant folding cannot evaluate the chain, but its elements
//! are still known as expressions over the symbols. [`propagate`] computes
//! them: the values of the small integer tensors that shape arithmetic
//! makes, as [`SymValue`]s, which shape inference then hands to the ops
//! that read them (`Reshape`'s shape, `Expand`'s, `Slice`'s ends, …; see
//! [`super::InferCtx::ints`]).
//!
//! The meaning of each op is not restated here. Data movement (`Gather`,
//! `Concat`, `Slice`, `Unsqueeze`, …) runs the op's own `eval` on a tensor
//! of element ids and reads back which element went where; only the
//! arithmetic on elements (`Add`, `Mul`, `Div`, comparisons, `Where`) is
//! the [`Expr`] algebra's.

use crate::dtype::DType;
use crate::graph::{Node, ValueType};
use crate::sym::Expr;
use crate::tensor::Tensor;

/// The largest tensor whose elements are tracked: shapes, not data.
pub const MAX_ELEMENTS: usize = 64;

/// The elements of a small integer tensor as size expressions.
#[derive(Clone, Debug, PartialEq)]
pub struct SymValue {
    pub shape: Vec<usize>,
    pub elems: Vec<Expr>,
}

impl SymValue {
    /// The elements of an integer constant, when it is small.
    pub fn of_tensor(t: &Tensor) -> Option<SymValue> {
        if !t.dtype().is_int() || t.len() > MAX_ELEMENTS {
            return None;
        }
        Some(SymValue {
            shape: t.shape().to_vec(),
            elems: t.to_i64s().into_iter().map(Expr::constant).collect(),
        })
    }

    /// The elements, when every one is an integer.
    pub fn constants(&self) -> Option<Vec<i64>> {
        self.elems.iter().map(Expr::as_const).collect()
    }

    /// Whether some element is not an integer.
    pub fn is_symbolic(&self) -> bool {
        self.elems.iter().any(|e| e.as_const().is_none())
    }
}

/// Input `i` of a node for [`propagate`]: its type, its value where it
/// is a constant, and its symbolic value where shape arithmetic made it.
pub struct Operand<'a> {
    pub ty: Option<&'a ValueType>,
    pub constant: Option<&'a Tensor>,
    pub value: Option<&'a SymValue>,
}

impl Operand<'_> {
    fn sym(&self) -> Option<SymValue> {
        self.value
            .cloned()
            .or_else(|| self.constant.and_then(SymValue::of_tensor))
    }
}

/// The values of `node`'s outputs (one entry per output) where it is
/// shape arithmetic over known elements; empty otherwise. A result may be
/// all integers (`Gather` of a shape's fixed dim) though an input was
/// symbolic: that is how a fixed size leaves a symbolic shape.
pub fn propagate(node: &Node, inputs: &[Operand], opset: u32) -> Vec<Option<SymValue>> {
    if !node.domain.is_empty() {
        return Vec::new();
    }
    let out = match node.op.as_str() {
        "Shape" => shape_of(node, inputs).map(|v| vec![Some(v)]),
        "Size" => size_of(inputs).map(|v| vec![Some(v)]),
        "Cast" => cast(node, inputs).map(|v| vec![Some(v)]),
        "Identity" | "Floor" | "Ceil" | "Round" => {
            inputs.first().and_then(Operand::sym).map(|v| vec![Some(v)])
        }
        "Gather" | "Unsqueeze" | "Squeeze" | "Slice" | "Reshape" | "Flatten" | "Transpose"
        | "Expand" | "Tile" | "GatherElements" | "Split" => moved(node, inputs, &[0], opset),
        "Concat" => {
            let all: Vec<usize> = (0..inputs.len()).collect();
            moved(node, inputs, &all, opset)
        }
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Mod" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
            pointwise(node, inputs).map(|v| vec![Some(v)])
        }
        "Neg" | "Abs" | "Not" => pointwise(node, inputs).map(|v| vec![Some(v)]),
        "Where" => select(inputs).map(|v| vec![Some(v)]),
        "ReduceProd" | "ReduceSum" => reduce(node, inputs).map(|v| vec![Some(v)]),
        _ => None,
    };
    out.unwrap_or_default()
}

fn shape_of(node: &Node, inputs: &[Operand]) -> Option<SymValue> {
    let dims = inputs.first()?.ty?.shape.exprs()?;
    let (s, e) = super::params::shape_range(&node.attrs, dims.len()).ok()?;
    Some(SymValue {
        shape: vec![e - s],
        elems: dims[s..e].to_vec(),
    })
}

fn size_of(inputs: &[Operand]) -> Option<SymValue> {
    Some(SymValue {
        shape: Vec::new(),
        elems: vec![inputs.first()?.ty?.shape.numel_expr()?],
    })
}

/// Casts between integer types keep sizes (they fit every one); a cast
/// to bool keeps whether each is non-zero where that is known.
fn cast(node: &Node, inputs: &[Operand]) -> Option<SymValue> {
    let v = inputs.first()?.sym()?;
    let to = DType::from_onnx(node.attrs.int("to", 0).ok()? as i32)?;
    if to.is_int() {
        return Some(v);
    }
    None
}

/// Ids stand for elements while an op's own `eval` moves them: far from
/// any size or index a shape computation holds.
const ID_BASE: i64 = 1 << 60;

/// Data movement: inputs in `data` are replaced by tensors of element ids
/// and the op's `eval` runs; every output element must be one of the ids.
/// The other inputs (indices, axes, bounds) must be constants.
fn moved(
    node: &Node,
    inputs: &[Operand],
    data: &[usize],
    opset: u32,
) -> Option<Vec<Option<SymValue>>> {
    let mut table: Vec<Expr> = Vec::new();
    let mut owned: Vec<Option<Tensor>> = Vec::with_capacity(inputs.len());
    for (i, op) in inputs.iter().enumerate() {
        if !data.contains(&i) {
            owned.push(op.constant.cloned());
            if op.ty.is_some() && op.constant.is_none() {
                return None;
            }
            continue;
        }
        let Some(v) = op.sym() else {
            // An absent optional input, or data that is not shape arithmetic.
            if op.ty.is_some() {
                return None;
            }
            owned.push(None);
            continue;
        };
        let ids: Vec<i64> = (0..v.elems.len())
            .map(|k| ID_BASE + (table.len() + k) as i64)
            .collect();
        table.extend(v.elems);
        owned.push(Some(Tensor::i64s(v.shape, ids)));
    }
    let outputs =
        crate::interp::eval_node(node, owned.iter().map(Option::as_ref).collect(), opset).ok()?;
    outputs
        .iter()
        .map(|t| {
            let elems = t
                .to_i64s()
                .into_iter()
                .map(|id| {
                    let k = usize::try_from(id.checked_sub(ID_BASE)?).ok()?;
                    table.get(k).cloned()
                })
                .collect::<Option<Vec<Expr>>>()?;
            Some(Some(SymValue {
                shape: t.shape().to_vec(),
                elems,
            }))
        })
        .collect()
}

fn truth(b: bool) -> Expr {
    Expr::constant(i64::from(b))
}

/// One output element from the inputs' elements at its broadcast position.
fn element(op: &str, args: &[&Expr]) -> Option<Expr> {
    let diff = || args[0].sub(args[1]).as_const();
    Some(match (op, args) {
        ("Add", [a, b]) => a.add(b),
        ("Sub", [a, b]) => a.sub(b),
        ("Mul", [a, b]) => a.mul(b),
        // Integer Div truncates; sizes are not negative, where it floors.
        ("Div", [a, b]) => match (a.as_const(), b.as_const()) {
            (Some(x), Some(y)) if y != 0 => Expr::constant(x.wrapping_div(y)),
            _ => a.floor_div(b),
        },
        ("Mod", [a, b]) => a.rem(b),
        ("Max", [a, b]) => a.max_of(b),
        ("Min", [a, b]) => a.min_of(b),
        ("Neg", [a]) => a.scale(-1),
        ("Abs", [a]) => Expr::constant(a.as_const()?.abs()),
        ("Not", [a]) => truth(a.as_const()? == 0),
        ("Equal", _) => truth(diff()? == 0),
        ("Less", _) => truth(diff()? < 0),
        ("Greater", _) => truth(diff()? > 0),
        ("LessOrEqual", _) => truth(diff()? <= 0),
        ("GreaterOrEqual", _) => truth(diff()? >= 0),
        ("And", [a, b]) => truth(a.as_const()? != 0 && b.as_const()? != 0),
        ("Or", [a, b]) => truth(a.as_const()? != 0 || b.as_const()? != 0),
        _ => return None,
    })
}

/// The inputs' values broadcast to one shape, element by element.
fn broadcast(values: &[SymValue]) -> Option<(Vec<usize>, Vec<Vec<&Expr>>)> {
    let shapes: Vec<&[usize]> = values.iter().map(|v| v.shape.as_slice()).collect();
    let out = super::util::broadcast_shapes(&shapes).ok()?;
    let offsets: Vec<Vec<usize>> = values
        .iter()
        .map(|v| super::util::broadcast_offsets(&v.shape, &out))
        .collect();
    let n: usize = out.iter().product();
    let rows = (0..n)
        .map(|i| {
            values
                .iter()
                .zip(&offsets)
                .map(|(v, o)| &v.elems[o[i]])
                .collect()
        })
        .collect();
    Some((out, rows))
}

fn pointwise(node: &Node, inputs: &[Operand]) -> Option<SymValue> {
    let values: Vec<SymValue> = inputs.iter().map(Operand::sym).collect::<Option<_>>()?;
    let (shape, rows) = broadcast(&values)?;
    let elems = rows
        .iter()
        .map(|args| element(&node.op, args))
        .collect::<Option<_>>()?;
    Some(SymValue { shape, elems })
}

/// `Where` with a condition known element by element.
fn select(inputs: &[Operand]) -> Option<SymValue> {
    let values: Vec<SymValue> = inputs.iter().map(Operand::sym).collect::<Option<_>>()?;
    let (shape, rows) = broadcast(&values)?;
    let elems = rows
        .iter()
        .map(|r| Some(if r[0].as_const()? != 0 { r[1] } else { r[2] }.clone()))
        .collect::<Option<_>>()?;
    Some(SymValue { shape, elems })
}

/// The product or sum of all elements of a 1-D value (the element count
/// of a computed shape).
fn reduce(node: &Node, inputs: &[Operand]) -> Option<SymValue> {
    let v = inputs.first()?.sym()?;
    let all_axes = inputs.get(1).is_none_or(|a| a.ty.is_none()) && !node.attrs.has("axes");
    if v.shape.len() != 1 || !all_axes {
        return None;
    }
    let keep = node.attrs.int("keepdims", 1).ok()? != 0;
    let e = if node.op == "ReduceProd" {
        Expr::product(&v.elems)
    } else {
        v.elems.iter().fold(Expr::constant(0), |a, b| a.add(b))
    };
    Some(SymValue {
        shape: if keep { vec![1] } else { Vec::new() },
        elems: vec![e],
    })
}
