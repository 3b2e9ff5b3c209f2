//! Fitting the weights into a byte budget (`--fit 12MB`): bits per layer
//! chosen from measured sensitivity.
//!
//! Every layer the precision map leaves free (no rule of it sets `bits`)
//! is quantized at each width of [`WIDTHS`] (below 8 bits also in groups
//! of half the map's group, when that is 16 or more), and may also stay
//! float32.
//! Each option's *loss* is its predicted share of the model's output
//! error, `sensitivity × error²`: `error` is the layer's relative output
//! error on the calibration samples (its relative weight error without
//! samples), and `sensitivity` how much the model's outputs move per unit
//! of it. Sensitivity is measured end to end, once per layer: the
//! sample run (see [`Calibration::keep_sample_run`]) goes
//! through the model with only that layer's weight at [`PROBE_BITS`],
//! and `sensitivity = ‖Y − Y₀‖² / ‖Y₀‖² ÷ error²`. Without samples every
//! sensitivity is 1 and only the weight errors decide.
//!
//! Losses are added up over layers: on all-MiniLM-L6-v2 at 4 bits, the
//! embedding tables alone lose 0.0021 of cosine similarity, the
//! attention layers alone 0.0053, the feed-forward layers alone 0.0071,
//! and all together 0.0143 (their sum is 0.0145).
//!
//! The choice starts with every layer at its largest option worth its
//! bytes and takes the cheapest step down (least loss added per byte
//! saved, along each layer's lower convex hull of options) until the
//! weights fit; then, while bytes are left, the upgrade that removes the
//! most loss per byte. Greedy, not optimal: it is a multiple-choice
//! knapsack.

use std::collections::HashMap;

use wpc_ir::{Error, Model, Result};

use super::{Calibration, Packed, Planned, quantize_layer};

/// The widths a free layer may get, besides float32.
pub const WIDTHS: [u32; 4] = [8, 4, 3, 2];

/// The (bits, group) options of a free layer: each width at the map's
/// group, and below 8 bits at half of it too (more scales: less error
/// for a few bytes more; at 2 bits that is often the better buy).
fn candidates(group: usize) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    for bits in WIDTHS {
        out.push((bits, group));
        if bits < 8 && group / 2 >= 16 {
            out.push((bits, group / 2));
        }
    }
    out
}

/// The width sensitivity is measured at.
const PROBE_BITS: u32 = 3;

/// What [`choose`] chose, in bytes of the variant's weights.
#[derive(Clone, Debug, PartialEq)]
pub struct FitReport {
    pub budget: u64,
    /// Weights no choice changes: biases, norms, every other constant,
    /// and the layers whose bits the map fixed.
    pub fixed: u64,
    /// All weights as chosen.
    pub bytes: u64,
    /// Predicted relative squared error of the outputs (the sum of the
    /// chosen options' losses).
    pub loss: f64,
    /// Whether sensitivities were measured end to end on samples.
    pub measured: bool,
}

/// One way to store a layer.
struct Choice {
    packed: Option<Packed>,
    bytes: u64,
    loss: f64,
}

/// The options of each planned layer, the one chosen for each, and what
/// was chosen; fails when even the smallest options do not fit.
pub(super) fn choose(
    model: &Model,
    planned: &[Planned],
    budget: u64,
    calibration: &Calibration,
    progress: super::Progress,
) -> Result<(Vec<Option<Packed>>, FitReport)> {
    let g = &model.graph;
    let mut weights: Vec<_> = planned.iter().map(|p| p.layer.weight).collect();
    weights.sort();
    weights.dedup();
    let all: u64 = g
        .constants
        .values()
        .map(|t| (t.len() * t.dtype().size()) as u64)
        .sum();
    let layer_floats: u64 = weights
        .iter()
        .map(|w| g.constants[w].len() as u64 * 4)
        .sum();
    let mut fixed = all.saturating_sub(layer_floats);
    let mut options: Vec<Vec<Choice>> = Vec::with_capacity(planned.len());
    let stage = "quantizing layers at every width";
    for (done, p) in planned.iter().enumerate() {
        progress(stage, done, planned.len());
        let float = Choice {
            packed: None,
            bytes: (p.layer.rows * p.layer.k * 4) as u64,
            loss: 0.0,
        };
        if p.pinned {
            let packed = quantize_layer(&p.layer, p.setting, calibration);
            fixed += packed.as_ref().map_or(float.bytes, |q| q.bytes as u64);
            options.push(vec![Choice {
                packed,
                bytes: 0,
                loss: 0.0,
            }]);
            continue;
        }
        let mut list = vec![float];
        for (bits, group) in candidates(p.setting.group) {
            let setting = super::Setting {
                bits: Some(bits),
                group,
                ..p.setting
            };
            if let Some(q) = quantize_layer(&p.layer, setting, calibration) {
                list.push(Choice {
                    bytes: q.bytes as u64,
                    loss: q.error * q.error,
                    packed: Some(q),
                });
            }
        }
        options.push(list);
    }
    progress(stage, planned.len(), planned.len());
    let sensitivity = sensitivities(model, planned, &options, calibration, progress)?;
    let measured = sensitivity.is_some();
    if let Some(s) = &sensitivity {
        for (list, &s) in options.iter_mut().zip(s) {
            list.iter_mut().for_each(|c| c.loss *= s);
        }
    }
    let free_budget = budget.checked_sub(fixed);
    let picked = free_budget.and_then(|b| allocate(&options, b)).ok_or_else(|| {
        let least: u64 = options
            .iter()
            .map(|l| l.iter().map(|c| c.bytes).min().unwrap_or(0))
            .sum();
        Error::invalid(format!(
            "--fit {} ({budget} bytes): the weights cannot be made that small: at the fewest bits every layer may take they are {} ({} bytes), {} of them weights no layer choice shrinks (biases, norms, other constants and layers the precision map fixes)",
            human(budget),
            human(fixed + least),
            fixed + least,
            human(fixed)
        ))
    })?;
    let mut bytes = fixed;
    let mut loss = 0.0;
    let mut chosen = Vec::with_capacity(planned.len());
    for (list, i) in options.into_iter().zip(picked) {
        let c = list.into_iter().nth(i).expect("picked among the options");
        bytes += c.bytes;
        loss += c.loss;
        chosen.push(c.packed);
    }
    Ok((
        chosen,
        FitReport {
            budget,
            fixed,
            bytes,
            loss,
            measured,
        },
    ))
}

/// The option of each layer that keeps the sum of bytes within `budget`
/// with little summed loss (see the module docs); `None` if even the
/// smallest options do not fit.
fn allocate(options: &[Vec<Choice>], budget: u64) -> Option<Vec<usize>> {
    // Each layer's hull: options by decreasing bytes whose loss falls, with
    // no option above the segment joining its neighbours.
    let hulls: Vec<Vec<usize>> = options.iter().map(|l| hull(l)).collect();
    let mut at: Vec<usize> = vec![0; options.len()];
    let mut total: u64 = hulls.iter().zip(options).map(|(h, l)| l[h[0]].bytes).sum();
    // Steps down every hull, cheapest first: along a hull the slopes
    // rise, so a layer's steps come out in order.
    let mut steps: Vec<(f64, usize, usize)> = Vec::new();
    for (layer, h) in hulls.iter().enumerate() {
        for s in 1..h.len() {
            let (a, b) = (&options[layer][h[s - 1]], &options[layer][h[s]]);
            let slope = (b.loss - a.loss) / (a.bytes - b.bytes) as f64;
            steps.push((slope, layer, s));
        }
    }
    steps.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (_, layer, s) in steps {
        if total <= budget {
            break;
        }
        // Rounding may order two steps of a layer backwards: a step
        // already passed is skipped, one further down takes the rest.
        if s <= at[layer] {
            continue;
        }
        let l = &options[layer];
        total -= l[hulls[layer][at[layer]]].bytes - l[hulls[layer][s]].bytes;
        at[layer] = s;
    }
    if total > budget {
        return None;
    }
    let mut picked: Vec<usize> = at.iter().zip(&hulls).map(|(&s, h)| h[s]).collect();
    // The last step may have saved more than needed: spend what is left
    // on the upgrades that remove the most loss per byte while they fit.
    loop {
        let slack = budget - total;
        let mut best: Option<(f64, usize, usize)> = None;
        for (layer, list) in options.iter().enumerate() {
            let now = &list[picked[layer]];
            for (i, c) in list.iter().enumerate() {
                if c.bytes <= now.bytes || c.bytes - now.bytes > slack || c.loss >= now.loss {
                    continue;
                }
                let gain = (now.loss - c.loss) / (c.bytes - now.bytes) as f64;
                if best.is_none_or(|(g, _, _)| gain > g) {
                    best = Some((gain, layer, i));
                }
            }
        }
        let Some((_, layer, i)) = best else {
            break;
        };
        total += options[layer][i].bytes - options[layer][picked[layer]].bytes;
        picked[layer] = i;
    }
    Some(picked)
}

/// The lower convex hull of a layer's options in (bytes, loss), from the
/// largest to the smallest: indices into `options`.
fn hull(options: &[Choice]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..options.len()).collect();
    order.sort_by(|&a, &b| {
        options[b]
            .bytes
            .cmp(&options[a].bytes)
            .then(options[a].loss.total_cmp(&options[b].loss))
    });
    // An option is worth its bytes only if it loses less than every
    // smaller one (a 16-value group can make a quantized short row larger
    // than the float row, and no better).
    let mut least = f64::INFINITY;
    let mut kept: Vec<usize> = Vec::with_capacity(order.len());
    for &i in order.iter().rev() {
        if options[i].loss < least {
            least = options[i].loss;
            kept.push(i);
        }
    }
    kept.reverse();
    let mut h: Vec<usize> = Vec::new();
    for i in kept {
        let c = &options[i];
        // Of options of equal size, the one of least loss (first).
        if let Some(&last) = h.last()
            && options[last].bytes == c.bytes
        {
            continue;
        }
        while h.len() >= 2 {
            let (a, b) = (&options[h[h.len() - 2]], &options[h[h.len() - 1]]);
            // b is above the line from a to c: drop it.
            let lhs = (b.loss - a.loss) * (a.bytes - c.bytes) as f64;
            let rhs = (c.loss - a.loss) * (a.bytes - b.bytes) as f64;
            if lhs >= rhs {
                h.pop();
            } else {
                break;
            }
        }
        h.push(i);
    }
    h
}

/// Each layer's sensitivity (see the module docs), or `None` without a
/// sample run. A layer whose weight the run's model lacks gets the
/// mean of the others'.
fn sensitivities(
    model: &Model,
    planned: &[Planned],
    options: &[Vec<Choice>],
    calibration: &Calibration,
    progress: super::Progress,
) -> Result<Option<Vec<f64>>> {
    let Some(sample) = calibration.sample_run.as_deref() else {
        return Ok(None);
    };
    let run = |m: &Model| -> Result<Vec<Vec<f32>>> {
        Ok(wpc_ir::interp::run_model(m, &sample.feeds)
            .map_err(|e| e.within("measuring layer sensitivity on the calibration samples"))?
            .into_iter()
            .map(|(_, t)| t.to_f32s())
            .collect())
    };
    let base: Vec<Vec<f32>> = sample.float.iter().map(|(_, t)| t.to_f32s()).collect();
    let norm: f64 = base.iter().flatten().map(|&v| f64::from(v).powi(2)).sum();
    let mut probe = sample.model.clone();
    let mut measured: Vec<Option<f64>> = vec![None; planned.len()];
    let stage = "measuring layer sensitivity";
    for (i, (p, list)) in planned.iter().zip(options).enumerate() {
        progress(stage, i, planned.len());
        // The probe at the map's group (the first option of its width).
        let Some(q) = list
            .iter()
            .filter_map(|c| c.packed.as_ref())
            .find(|q| q.spec.bits == PROBE_BITS)
        else {
            continue;
        };
        if q.error == 0.0 {
            continue;
        }
        let Some((v, original)) = super::substitute_dequantized(&mut probe, &model.graph, p, q)
        else {
            continue;
        };
        let out = run(&probe)?;
        probe.graph.constants.insert(v, original);
        let moved: f64 = out
            .iter()
            .flatten()
            .zip(base.iter().flatten())
            .map(|(&a, &b)| f64::from(a - b).powi(2))
            .sum();
        measured[i] = Some(moved / norm.max(f64::MIN_POSITIVE) / (q.error * q.error));
    }
    progress(stage, planned.len(), planned.len());
    let known: Vec<f64> = measured.iter().flatten().copied().collect();
    if known.is_empty() {
        return Ok(None);
    }
    let mean = known.iter().sum::<f64>() / known.len() as f64;
    Ok(Some(
        measured.into_iter().map(|m| m.unwrap_or(mean)).collect(),
    ))
}

/// Parses a budget: bytes, or a number with `KB`/`MB`/`GB` (powers of
/// 1000) or `KiB`/`MiB`/`GiB` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let units: HashMap<&str, f64> = HashMap::from([
        ("", 1.0),
        ("B", 1.0),
        ("KB", 1e3),
        ("MB", 1e6),
        ("GB", 1e9),
        ("KiB", 1024.0),
        ("MiB", 1024.0 * 1024.0),
        ("GiB", 1024.0 * 1024.0 * 1024.0),
    ]);
    let bad = || {
        Error::invalid(format!(
            "'{text}' is not a size: give bytes or a number with KB, MB, GB (or KiB, MiB, GiB), e.g. 40MB"
        ))
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    let scale = units.get(unit.trim()).ok_or_else(bad)?;
    let bytes = n * scale;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `bytes` for people, in powers of 1000 as `--fit` reads them.
pub fn human(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} KB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn choices(list: &[(u64, f64)]) -> Vec<Choice> {
        list.iter()
            .map(|&(bytes, loss)| Choice {
                packed: None,
                bytes,
                loss,
            })
            .collect()
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("40MB").unwrap(), 40_000_000);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("12000").unwrap(), 12_000);
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(
            [human(999), human(2_000), human(12_200_000), human(3 << 30)],
            ["999 B", "2.0 KB", "12.20 MB", "3.22 GB"]
        );
        for bad in ["", "MB", "12 parsecs", "-3MB", "0"] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains("is not a size"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_budget_goes_where_it_removes_the_most_loss() {
        // Two layers of equal size: the first loses 100 times more per
        // step down, so it keeps more bits.
        let sensitive = choices(&[(800, 0.0), (200, 0.01), (100, 0.16), (75, 0.64), (50, 2.56)]);
        let tolerant = choices(&[
            (800, 0.0),
            (200, 0.0001),
            (100, 0.0016),
            (75, 0.0064),
            (50, 0.0256),
        ]);
        let picked = allocate(&[sensitive, tolerant], 260).unwrap();
        assert_eq!(picked, [1, 4]);
        assert!(allocate(&[choices(&[(10, 0.0), (5, 1.0)])], 4).is_none());
        // A short row: 8 bits in a 16-value group take more bytes than
        // float32, and lose more; float32 it stays.
        let short = choices(&[(16, 0.0), (21, 1e-5), (10, 0.01)]);
        assert_eq!(allocate(&[short], 100).unwrap(), [0]);
    }

    proptest! {
        /// What `allocate` picks fits the budget whenever the smallest
        /// options do, and no single layer's upgrade that still fits
        /// would lower the loss.
        #[test]
        fn allocations_fit_and_cannot_be_improved_by_one_upgrade(
            layers in prop::collection::vec(
                prop::collection::vec((1u64..1000, 0.0f64..10.0), 1..5), 1..6),
            budget in 1u64..4000,
        ) {
            // Options of a layer: larger ones lose less (as widths do).
            let options: Vec<Vec<Choice>> = layers.iter().map(|l| {
                let mut l = l.clone();
                l.sort_by_key(|c| std::cmp::Reverse(c.0));
                let mut loss = 0.0;
                choices(&l.iter().map(|&(b, d)| { loss += d; (b, loss) }).collect::<Vec<_>>())
            }).collect();
            let least: u64 = options.iter().map(|l| l.iter().map(|c| c.bytes).min().unwrap()).sum();
            let picked = allocate(&options, budget);
            prop_assert_eq!(picked.is_some(), least <= budget);
            if let Some(picked) = picked {
                let total: u64 = picked.iter().zip(&options).map(|(&i, l)| l[i].bytes).sum();
                prop_assert!(total <= budget);
                for (layer, l) in options.iter().enumerate() {
                    let now = &l[picked[layer]];
                    for c in l {
                        let fits = c.bytes <= now.bytes || total - now.bytes + c.bytes <= budget;
                        prop_assert!(!(fits && c.loss < now.loss && c.bytes > now.bytes),
                            "layer {layer}: an upgrade to {} bytes fits", c.bytes);
                    }
                }
            }
        }
    }
}
