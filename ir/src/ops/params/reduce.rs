//! Parameters of the reductions.

use crate::attr::Attrs;
use crate::error::Result;
use crate::ops::util::{norm_axes, norm_axis};

/// The `Reduce*` ops.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub keepdims: bool,
    /// With no axes, return the input (instead of reducing every axis).
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    pub fn of(a: &Attrs) -> Result<Reduce> {
        Ok(Reduce {
            keepdims: a.int("keepdims", 1)? != 0,
            noop_with_empty_axes: a.int("noop_with_empty_axes", 0)? != 0,
        })
    }

    /// The axes to reduce for an input of `rank`, given the node's axes
    /// ([`ints_input`] 1); `None` when the op is a no-op. Repeated axes
    /// are an error.
    pub fn axes(&self, given: Option<Vec<i64>>, rank: usize) -> Result<Option<Vec<usize>>> {
        match given {
            Some(a) if !a.is_empty() => Ok(Some(norm_axes(&a, rank)?)),
            _ if self.noop_with_empty_axes => Ok(None),
            _ => Ok(Some((0..rank).collect())),
        }
    }
}

/// `ArgMax` and `ArgMin`.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgReduce {
    axis: i64,
    pub keepdims: bool,
    /// Of equal values, the last index wins (else the first).
    pub select_last_index: bool,
}

impl ArgReduce {
    pub fn of(a: &Attrs) -> Result<ArgReduce> {
        Ok(ArgReduce {
            axis: a.int("axis", 0)?,
            keepdims: a.int("keepdims", 1)? != 0,
            select_last_index: a.int("select_last_index", 0)? != 0,
        })
    }

    /// The reduced axis of an input of `rank`.
    pub fn axis(&self, rank: usize) -> Result<usize> {
        norm_axis(self.axis, rank)
    }
}
