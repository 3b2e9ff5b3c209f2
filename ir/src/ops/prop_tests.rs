//! Property tests: the interpreter's broadcasting, matrix products,
//! convolution and reductions against straightforward definitions written
//! with plain loops, on random shapes (including 1s, primes and empty axes).

use proptest::prelude::*;

use crate::attr::{Attr, Attrs};
use crate::graph::Node;
use crate::tensor::{Tensor, strides};

fn eval(op: &str, inputs: &[&Tensor], attrs: Attrs) -> Tensor {
    let node = Node {
        name: "n".into(),
        op: op.into(),
        domain: String::new(),
        inputs: vec![],
        outputs: vec![],
        attrs,
    };
    crate::interp::eval_node(&node, inputs.iter().map(|t| Some(*t)).collect(), 21)
        .expect("op evaluates")
        .remove(0)
}

fn tensor(shape: Vec<usize>, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    // Small integers keep f32 sums exact, so comparisons can be strict.
    let v: Vec<f32> = (0..n as u64)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed * 97)) % 7) as f32 - 3.0)
        .collect();
    Tensor::from_vec(shape, v)
}

fn attrs(list: Vec<(&str, Attr)>) -> Attrs {
    Attrs(list.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Multi-index of flat `i` in `shape`.
fn index(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn offset(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(strides(shape)).map(|(i, s)| i * s).sum()
}

/// An output shape and two shapes that broadcast to it.
fn broadcast_shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1usize..5, 0..5)
        .prop_flat_map(|out| {
            let r = out.len();
            (
                Just(out),
                prop::collection::vec(any::<bool>(), r),
                prop::collection::vec(any::<bool>(), r),
                0..=r,
                0..=r,
            )
        })
        .prop_map(|(out, ones_a, ones_b, drop_a, drop_b)| {
            let a: Vec<usize> = out
                .iter()
                .zip(&ones_a)
                .map(|(&d, &one)| if one { 1 } else { d })
                .skip(drop_a)
                .collect();
            let b: Vec<usize> = out
                .iter()
                .zip(&ones_b)
                .map(|(&d, &one)| if one { 1 } else { d })
                .skip(drop_b)
                .collect();
            // Dropping leading dims of both inputs drops them from the result too.
            let out = out[drop_a.min(drop_b)..]
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    let pos = i + drop_a.min(drop_b);
                    let da = if pos >= drop_a { a[pos - drop_a] } else { 1 };
                    let db = if pos >= drop_b { b[pos - drop_b] } else { 1 };
                    if da == 1 && db == 1 { 1 } else { d }
                })
                .collect();
            (out, a, b)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn broadcasting_matches_definition((out, a_shape, b_shape) in broadcast_shapes(), seed in 0u64..100) {
        let (a, b) = (tensor(a_shape.clone(), seed), tensor(b_shape.clone(), seed + 1));
        let got = eval("Sub", &[&a, &b], Attrs::default());
        prop_assert_eq!(got.shape(), out.as_slice());
        let (av, bv) = (a.to_f64s(), b.to_f64s());
        let pick = |idx: &[usize], shape: &[usize]| {
            let off = idx.len() - shape.len();
            let sub: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if d == 1 { 0 } else { idx[off + i] }).collect();
            offset(&sub, shape)
        };
        for (i, g) in got.to_f64s().iter().enumerate() {
            let idx = index(i, &out);
            prop_assert_eq!(*g, av[pick(&idx, &a_shape)] - bv[pick(&idx, &b_shape)]);
        }
    }

    #[test]
    fn matmul_matches_definition(batch in prop::collection::vec(1usize..3, 0..3), m in 1usize..8, k in 0usize..9, n in 1usize..8, bcast in any::<bool>()) {
        let a_shape = [batch.clone(), vec![m, k]].concat();
        let b_shape = if bcast { vec![k, n] } else { [batch.clone(), vec![k, n]].concat() };
        let (a, b) = (tensor(a_shape, 1), tensor(b_shape, 2));
        let got = eval("MatMul", &[&a, &b], Attrs::default());
        let nb: usize = batch.iter().product();
        let out_shape = [batch.clone(), vec![m, n]].concat();
        prop_assert_eq!(got.shape(), out_shape.as_slice());
        let (av, bv, gv) = (a.to_f64s(), b.to_f64s(), got.to_f64s());
        for p in 0..nb {
            let bo = if bcast { 0 } else { p * k * n };
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|q| av[p * m * k + i * k + q] * bv[bo + q * n + j]).sum();
                    prop_assert_eq!(gv[p * m * n + i * n + j], want);
                }
            }
        }
    }

    #[test]
    fn gemm_matches_definition(m in 1usize..7, k in 1usize..7, n in 1usize..7, ta in any::<bool>(), tb in any::<bool>(), c_row in any::<bool>()) {
        let a = tensor(if ta { vec![k, m] } else { vec![m, k] }, 3);
        let b = tensor(if tb { vec![n, k] } else { vec![k, n] }, 4);
        let c = tensor(if c_row { vec![n] } else { vec![m, 1] }, 5);
        let at = attrs(vec![("transA", Attr::Int(ta as i64)), ("transB", Attr::Int(tb as i64)), ("alpha", Attr::Float(2.0)), ("beta", Attr::Float(0.5))]);
        let got = eval("Gemm", &[&a, &b, &c], at).to_f64s();
        let (av, bv, cv) = (a.to_f64s(), b.to_f64s(), c.to_f64s());
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|q| av[if ta { q * m + i } else { i * k + q }] * bv[if tb { j * k + q } else { q * n + j }]).sum();
                let want = 2.0 * dot + 0.5 * cv[if c_row { j } else { i }];
                prop_assert_eq!(got[i * n + j], want);
            }
        }
    }

    #[test]
    fn conv2d_matches_definition(
        n in 1usize..3, cg in 1usize..3, mg in 1usize..3, group in 1usize..3,
        h in 1usize..8, w in 1usize..8, kh in 1usize..4, kw in 1usize..4,
        stride in 1usize..3, dil in 1usize..3, pad in 0usize..3,
    ) {
        let (c, m) = (cg * group, mg * group);
        prop_assume!(h + 2 * pad > (kh - 1) * dil && w + 2 * pad > (kw - 1) * dil);
        let x = tensor(vec![n, c, h, w], 6);
        let wt = tensor(vec![m, cg, kh, kw], 7);
        let bias = tensor(vec![m], 8);
        let p = pad as i64;
        let at = attrs(vec![
            ("group", Attr::Int(group as i64)),
            ("strides", Attr::Ints(vec![stride as i64; 2])),
            ("dilations", Attr::Ints(vec![dil as i64; 2])),
            ("pads", Attr::Ints(vec![p; 4])),
        ]);
        let got = eval("Conv", &[&x, &wt, &bias], at);
        let oh = (h + 2 * pad - (kh - 1) * dil - 1) / stride + 1;
        let ow = (w + 2 * pad - (kw - 1) * dil - 1) / stride + 1;
        prop_assert_eq!(got.shape(), &[n, m, oh, ow]);
        let (xv, wv, bv, gv) = (x.to_f64s(), wt.to_f64s(), bias.to_f64s(), got.to_f64s());
        for b in 0..n { for oc in 0..m { for oy in 0..oh { for ox in 0..ow {
            let g = oc / mg;
            let mut want = bv[oc];
            for ic in 0..cg { for ky in 0..kh { for kx in 0..kw {
                let iy = (oy * stride + ky * dil) as i64 - p;
                let ix = (ox * stride + kx * dil) as i64 - p;
                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                    want += xv[((b * c + g * cg + ic) * h + iy as usize) * w + ix as usize] * wv[((oc * cg + ic) * kh + ky) * kw + kx];
                }
            }}}
            prop_assert_eq!(gv[((b * m + oc) * oh + oy) * ow + ox], want);
        }}}}
    }

    #[test]
    fn reductions_match_definition(shape in prop::collection::vec(1usize..5, 1..5), mask in prop::collection::vec(any::<bool>(), 4), keep in any::<bool>(), op in 0usize..4) {
        let axes: Vec<i64> = (0..shape.len()).filter(|&i| mask[i]).map(|i| i as i64).collect();
        let x = tensor(shape.clone(), 9);
        let name = ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceSumSquare"][op];
        let axes_t = Tensor::i64s(vec![axes.len()], axes.clone());
        let got = eval(name, &[&x, &axes_t], attrs(vec![("keepdims", Attr::Int(keep as i64))]));
        let reduced: Vec<usize> = if axes.is_empty() { (0..shape.len()).collect() } else { axes.iter().map(|&a| a as usize).collect() };
        let kept: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if reduced.contains(&i) { 1 } else { d }).collect();
        let mut want = vec![None::<f64>; kept.iter().product()];
        for (i, v) in x.to_f64s().into_iter().enumerate() {
            let mut idx = index(i, &shape);
            for &r in &reduced { idx[r] = 0; }
            let slot = &mut want[offset(&idx, &kept)];
            let v2 = if op == 3 { v * v } else { v };
            *slot = Some(match (*slot, op) {
                (None, _) => v2,
                (Some(a), 1) => a.max(v2),
                (Some(a), 2) => a.min(v2),
                (Some(a), _) => a + v2,
            });
        }
        let want: Vec<f64> = want.into_iter().map(|v| v.expect("every slot reduced")).collect();
        prop_assert_eq!(got.to_f64s(), want);
        let expect_shape: Vec<usize> = if keep { kept } else { shape.iter().enumerate().filter(|(i, _)| !reduced.contains(i)).map(|(_, &d)| d).collect() };
        prop_assert_eq!(got.shape(), expect_shape.as_slice());
    }
}
