//! naga validation of generated WGSL.

use wpc_ir::{Error, ErrorKind, Result};

/// Parses and validates `source`; an error is a compiler bug, reported with
/// naga's diagnostic and the shader's label.
pub fn validate(label: &str, source: &str) -> Result<()> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!(
                "generated WGSL for {label} does not parse (a wpc bug):\n{}\n{source}",
                e.emit_to_string(source)
            ),
        )
    })?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        // `pack2x16float`/`unpack2x16float` are core WGSL (browsers and
        // wgpu's native backends have them); naga gates them only because
        // some GLSL ES targets lack them.
        naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
    )
    .validate(&module)
    .map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!(
                "generated WGSL for {label} fails validation (a wpc bug):\n{}\n{source}",
                e.emit_to_string(source)
            ),
        )
    })?;
    Ok(())
}
