//! Control flow: `If`, `Loop` and `Scan`, which run subgraphs through the
//! interpreter's [`super::SubgraphRunner`].

use super::movement::{concat, narrow};
use super::{EvalCtx, OpDef, op};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!("If", eval_if).steered_by(&[0]),
        op!("Loop", eval_loop),
        op!("Scan", eval_scan),
    ]
}

fn eval_if(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let cond = c.input(0)?;
    if cond.len() != 1 {
        bail!("If condition must hold one element, it has {}", cond.len());
    }
    let branch = if cond.first_bool()? {
        "then_branch"
    } else {
        "else_branch"
    };
    c.subgraphs
        .run(c.attrs().graph(branch)?, vec![])
        .map_err(|e| e.within(branch))
}

/// Stacks per-iteration tensors along a new leading axis.
fn stack(items: &[Tensor]) -> Result<Tensor> {
    let parts: Vec<Tensor> = items
        .iter()
        .map(|t| t.clone().reshaped([&[1], t.shape()].concat()))
        .collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    concat(&refs, 0)
}

fn eval_loop(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let body = c.attrs().graph("body")?;
    let max_trip = c.opt_input(0).map(Tensor::first_i64).transpose()?;
    let mut cond = c.opt_input(1).map(Tensor::first_bool).transpose()?;
    let mut carried: Vec<Tensor> = (2..c.num_inputs())
        .map(|i| c.input(i).cloned())
        .collect::<Result<_>>()?;
    let n_carried = carried.len();
    let n_scan = body
        .outputs
        .len()
        .checked_sub(1 + n_carried)
        .ok_or_else(|| Error::invalid("Loop body has too few outputs"))?;
    let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan];
    let mut i = 0i64;
    while max_trip.is_none_or(|m| i < m) && cond.unwrap_or(true) {
        let mut args = vec![Tensor::scalar(i), Tensor::scalar(cond.unwrap_or(true))];
        args.extend(carried.iter().cloned());
        let mut out = c
            .subgraphs
            .run(body, args)
            .map_err(|e| e.within(format!("Loop iteration {i}")))?;
        let rest = out.split_off(1 + n_carried);
        cond = Some(out[0].to_bools().first().copied().unwrap_or(false));
        carried = out.split_off(1);
        for (s, t) in scans.iter_mut().zip(rest) {
            s.push(t);
        }
        i += 1;
        if max_trip.is_none() && c.opt_input(1).is_none() {
            bail!("Loop has neither a trip count nor a condition: it would never end");
        }
    }
    let mut outs = carried;
    for s in scans {
        if s.is_empty() {
            bail!("Loop ran zero iterations, so its scan outputs have no known shape");
        }
        outs.push(stack(&s)?);
    }
    Ok(outs)
}

fn eval_scan(c: &EvalCtx) -> Result<Vec<Tensor>> {
    if c.opset < 9 {
        return Err(Error::unsupported(
            "Scan before opset 9 (a batch axis and sequence_lens); export the model at opset 9 or later",
        ));
    }
    let body = c.attrs().graph("body")?;
    let n_scan_in = c.attrs().int("num_scan_inputs", 0)? as usize;
    let n_state = c.num_inputs() - n_scan_in;
    let mut state: Vec<Tensor> = (0..n_state)
        .map(|i| c.input(i).cloned())
        .collect::<Result<_>>()?;
    let scan_in: Vec<&Tensor> = (n_state..c.num_inputs())
        .map(|i| c.input(i))
        .collect::<Result<_>>()?;
    let attr_list = |name: &str, n: usize| -> Result<Vec<i64>> {
        Ok(c.attrs()
            .opt_ints(name)?
            .map_or(vec![0; n], <[i64]>::to_vec))
    };
    let in_axes = attr_list("scan_input_axes", n_scan_in)?;
    let in_dirs = attr_list("scan_input_directions", n_scan_in)?;
    let n_scan_out = body.outputs.len() - n_state;
    let out_axes = attr_list("scan_output_axes", n_scan_out)?;
    let out_dirs = attr_list("scan_output_directions", n_scan_out)?;
    let axes: Vec<usize> = scan_in
        .iter()
        .zip(&in_axes)
        .map(|(t, &a)| super::util::norm_axis(a, t.rank()))
        .collect::<Result<_>>()?;
    let len = scan_in.first().map_or(0, |t| t.shape()[axes[0]]);
    let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan_out];
    for it in 0..len {
        let mut args = state.clone();
        for (k, t) in scan_in.iter().enumerate() {
            let pos = if in_dirs[k] != 0 { len - 1 - it } else { it };
            let slice = narrow(t, axes[k], pos, 1);
            let mut shape = slice.shape().to_vec();
            shape.remove(axes[k]);
            args.push(slice.reshaped(shape));
        }
        let mut out = c
            .subgraphs
            .run(body, args)
            .map_err(|e| e.within(format!("Scan iteration {it}")))?;
        let rest = out.split_off(n_state);
        state = out;
        for (o, t) in outs.iter_mut().zip(rest) {
            o.push(t);
        }
    }
    let mut result = state;
    for (k, mut items) in outs.into_iter().enumerate() {
        if out_dirs[k] != 0 {
            items.reverse();
        }
        let stacked = stack(&items)?;
        let axis = super::util::norm_axis(out_axes[k], stacked.rank())?;
        let mut perm: Vec<usize> = (1..stacked.rank()).collect();
        perm.insert(axis, 0);
        result.push(super::movement::transpose(&stacked, &perm));
    }
    Ok(result)
}
