//! Graph-to-graph passes (shape inference, constant folding, dead-node elimination, If inlining).
