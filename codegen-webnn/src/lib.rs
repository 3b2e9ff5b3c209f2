//! WebNN backend of wpc (not built yet).
//!
//! This crate will own turning a lowered graph into a WebNN graph description
//! that the JavaScript runtime replays on `MLGraphBuilder`, partitioning the
//! graph so that ops WebNN lacks fall back to the wasm variant.
