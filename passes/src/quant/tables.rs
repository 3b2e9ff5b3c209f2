//! Embedding tables onnxruntime's quantizer writes as int4 or uint4 values
//! (`GatherBlockQuantized` over a `[rows, k]` table of 4-bit codes) made
//! the packed uint8 form every backend's kernel reads, with float zero
//! points (`wpc_ir::ops::quant::packed_table` defines the meaning).

use wpc_ir::ops::params::GatherBlockQuantized;
use wpc_ir::ops::quant::{MICROSOFT, packed_table};
use wpc_ir::{Model, Result};

/// Repacks every `GatherBlockQuantized` whose table (and zero points, if
/// any) are int4 or uint4 constants; returns how many.
pub fn pack_sub_byte_tables(model: &mut Model) -> Result<usize> {
    let g = &mut model.graph;
    let mut packed = 0;
    for id in g.topo_order()? {
        let node = g.node(id);
        if node.op != "GatherBlockQuantized" || node.domain != MICROSOFT {
            continue;
        }
        let input = |i: usize| node.inputs.get(i).copied().flatten();
        let (Some(data), zeros) = (input(0), input(3)) else {
            continue;
        };
        let Some(table) = g.constants.get(&data) else {
            continue;
        };
        let zero_points = match zeros {
            Some(z) => match g.constants.get(&z) {
                Some(t) => Some(t),
                None => continue,
            },
            None => None,
        };
        let p = GatherBlockQuantized::of(&node.attrs)?;
        // Another width is the reference kernel's error to give.
        if p.bits != 4 {
            continue;
        }
        let Some((codes, zeros)) = packed_table(table, zero_points, p.block_size)? else {
            continue;
        };
        let name = g.value(data).name.clone();
        let codes_id = g.add_constant(&format!("{name}_packed"), codes);
        let zeros_id = g.add_constant(&format!("{name}_zero_points"), zeros);
        let node = g.node_mut(id);
        node.inputs[0] = Some(codes_id);
        node.inputs.resize(4, None);
        node.inputs[3] = Some(zeros_id);
        g.rewire(id);
        packed += 1;
    }
    Ok(packed)
}
