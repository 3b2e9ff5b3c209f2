//! Parameters of the recurrent cells.

use crate::attr::Attrs;
use crate::error::Result;

/// Which way `LSTM`, `GRU` and `RNN` run over the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
    Bidirectional,
}

/// The cell a recurrent op computes. W, R and B stack its gates in
/// ONNX's order: LSTM i, o, f, c (peepholes i, o, f); GRU z, r, h; RNN
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Lstm,
    Gru,
    Rnn,
}

impl Cell {
    /// The cell of op `LSTM`, `GRU` or `RNN`.
    pub fn of_op(op: &str) -> Option<Cell> {
        match op {
            "LSTM" => Some(Cell::Lstm),
            "GRU" => Some(Cell::Gru),
            "RNN" => Some(Cell::Rnn),
            _ => None,
        }
    }

    /// Gates stacked in W, R and B.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }

    /// The activations of one direction when the node names none: the
    /// gates' (f), the candidate's (g) and, for LSTM, the output's (h).
    pub fn default_activations(self) -> &'static [&'static str] {
        match self {
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Rnn => &["Tanh"],
        }
    }
}

/// `LSTM`, `GRU` and `RNN`.
#[derive(Clone, Debug, PartialEq)]
pub struct Recurrent {
    /// When absent, the recurrence weights' shape says.
    pub hidden_size: Option<usize>,
    /// `layout = 1`: inputs and outputs are batch-major.
    pub batch_first: bool,
    pub direction: Direction,
    /// The gate activations, per direction; `None`: the cell's defaults.
    pub activations: Option<Vec<String>>,
    /// Cell inputs are clipped to [-clip, clip].
    pub clip: Option<f32>,
    /// GRU: apply the reset gate after the recurrence's linear part.
    pub linear_before_reset: bool,
    /// LSTM: couple the input and forget gates.
    pub input_forget: bool,
}

impl Recurrent {
    pub fn of(a: &Attrs) -> Result<Recurrent> {
        let direction = match a.string("direction", "forward")? {
            "forward" => Direction::Forward,
            "reverse" => Direction::Reverse,
            "bidirectional" => Direction::Bidirectional,
            d => bail!("unknown direction '{d}' (forward, reverse or bidirectional)"),
        };
        let hidden_size = match a.opt_int("hidden_size")? {
            Some(h) if h < 1 => bail!("hidden_size must be positive, got {h}"),
            h => h.map(|h| h as usize),
        };
        Ok(Recurrent {
            hidden_size,
            batch_first: a.int("layout", 0)? != 0,
            direction,
            activations: a.opt_strings("activations")?.map(<[String]>::to_vec),
            clip: a.opt_float("clip")?,
            linear_before_reset: a.int("linear_before_reset", 0)? != 0,
            input_forget: a.int("input_forget", 0)? != 0,
        })
    }

    /// The activations of each direction, in order: those the node names
    /// (one direction's list serves both), else `cell`'s defaults.
    pub fn activations_per_direction(&self, cell: Cell) -> Result<Vec<Vec<String>>> {
        let defaults = cell.default_activations();
        let per = defaults.len();
        let dirs = self.directions();
        let names: Vec<String> = match &self.activations {
            Some(v) => v.clone(),
            None => defaults.iter().map(|s| s.to_string()).collect(),
        };
        if names.len() != per && names.len() != per * dirs {
            bail!(
                "{} activations {names:?}: a {cell:?} cell takes {per} per direction",
                names.len()
            );
        }
        Ok((0..dirs)
            .map(|d| names[(d * per) % names.len()..][..per].to_vec())
            .collect())
    }

    /// 1, or 2 when bidirectional.
    pub fn directions(&self) -> usize {
        if self.direction == Direction::Bidirectional {
            2
        } else {
            1
        }
    }
}

/// One item's length from a recurrent op's `sequence_lens`, capped at the
/// sequence; a negative length is refused.
pub fn sequence_length(given: i64, steps: usize) -> Result<usize> {
    match usize::try_from(given) {
        Ok(l) => Ok(l.min(steps)),
        Err(_) => bail!("sequence_lens holds a negative length {given}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Cell, Recurrent, sequence_length};
    use crate::attr::{Attr, Attrs};

    #[test]
    fn lengths_are_capped_and_negative_ones_refused() {
        assert_eq!(sequence_length(3, 5).unwrap(), 3);
        assert_eq!(sequence_length(7, 5).unwrap(), 5);
        let e = sequence_length(-1, 5).unwrap_err();
        assert!(e.reason.contains("negative length -1"), "{e}");
    }

    #[test]
    fn one_list_of_activations_serves_both_directions() {
        let mut a = Attrs::default();
        a.insert("direction", Attr::String("bidirectional".into()));
        a.insert("activations", Attr::Strings(vec!["Relu".into()]));
        let p = Recurrent::of(&a).unwrap();
        assert_eq!(
            p.activations_per_direction(Cell::Rnn).unwrap(),
            vec![vec!["Relu"]; 2]
        );
        a.insert(
            "activations",
            Attr::Strings(vec!["Relu".into(), "Tanh".into()]),
        );
        let p = Recurrent::of(&a).unwrap();
        assert_eq!(
            p.activations_per_direction(Cell::Rnn).unwrap(),
            vec![vec!["Relu"], vec!["Tanh"]]
        );
        // GRU takes two per direction: three is neither one list nor two.
        a.insert("activations", Attr::Strings(vec!["Relu".into(); 3]));
        let p = Recurrent::of(&a).unwrap();
        assert!(p.activations_per_direction(Cell::Gru).is_err());
    }
}
