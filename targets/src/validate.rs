//! Checks a profile is internally consistent and within what WebGPU
//! guarantees, so the compiler can trust it without re-checking.

use crate::profile::{Backend, Feature, Limits, MatmulTile, Precision, Profile};

impl Profile {
    /// Returns the first problem found, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "name '{}' must be non-empty ASCII letters, digits and '-'",
                self.name
            ));
        }
        if self.backends.is_empty() {
            return Err("backends: list at least one backend".into());
        }
        for (i, b) in self.backends.iter().enumerate() {
            if self.backends[..i].contains(b) {
                return Err(format!("backends: {b:?} listed twice"));
            }
        }
        if self.backends.contains(&Backend::WebNn) && !self.webnn.available {
            return Err("backends: lists webnn but webnn.available is false".into());
        }
        check_limits(&self.webgpu.limits)?;
        let mut seen = Vec::new();
        for f in &self.webgpu.features {
            if seen.contains(f) {
                return Err(format!("webgpu.features: {} listed twice", f.webgpu_name()));
            }
            seen.push(*f);
        }
        if self.precision == Precision::F16 && !self.webgpu.features.contains(&Feature::ShaderF16) {
            return Err("precision: f16 needs the shader-f16 feature in webgpu.features".into());
        }
        let limits = &self.webgpu.limits;
        let k = &self.webgpu.kernels;
        for (field, size) in [
            ("elementwise", k.elementwise),
            ("reduction", k.reduction),
            ("pool", k.pool),
        ] {
            check_workgroup(&format!("webgpu.kernels.{field}"), [size, 1], limits)?;
        }
        if !k.reduction.is_power_of_two() {
            return Err(format!(
                "webgpu.kernels.reduction: {} must be a power of two (tree reduction)",
                k.reduction
            ));
        }
        check_tile("webgpu.kernels.matmul", &k.matmul, limits)?;
        check_tile("webgpu.kernels.conv", &k.conv, limits)?;
        if self.memory_budget_mib == 0 {
            return Err("memory_budget_mib: must be positive".into());
        }
        if self.wasm.relaxed_simd && !self.wasm.simd {
            return Err("wasm.relaxed_simd needs wasm.simd".into());
        }
        Ok(())
    }
}

fn check_limits(l: &Limits) -> Result<(), String> {
    let d = Limits::SPEC_DEFAULTS;
    let pairs: [(&str, u64, u64); 8] = [
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x.into(),
            d.max_compute_workgroup_size_x.into(),
        ),
        (
            "max_compute_workgroup_size_y",
            l.max_compute_workgroup_size_y.into(),
            d.max_compute_workgroup_size_y.into(),
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup.into(),
            d.max_compute_invocations_per_workgroup.into(),
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size.into(),
            d.max_compute_workgroup_storage_size.into(),
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension.into(),
            d.max_compute_workgroups_per_dimension.into(),
        ),
        (
            "max_storage_buffer_binding_size",
            l.max_storage_buffer_binding_size,
            d.max_storage_buffer_binding_size,
        ),
        ("max_buffer_size", l.max_buffer_size, d.max_buffer_size),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage.into(),
            d.max_storage_buffers_per_shader_stage.into(),
        ),
    ];
    for (name, value, min) in pairs {
        if value < min {
            return Err(format!(
                "webgpu.limits.{name}: {value} is below the WebGPU guaranteed minimum {min}"
            ));
        }
    }
    if l.max_storage_buffer_binding_size > l.max_buffer_size {
        return Err("webgpu.limits.max_storage_buffer_binding_size exceeds max_buffer_size".into());
    }
    Ok(())
}

fn check_workgroup(field: &str, size: [u32; 2], l: &Limits) -> Result<(), String> {
    let [x, y] = size;
    if x == 0 || y == 0 {
        return Err(format!("{field}: workgroup sizes must be positive"));
    }
    if x > l.max_compute_workgroup_size_x || y > l.max_compute_workgroup_size_y {
        return Err(format!(
            "{field}: workgroup {x}x{y} exceeds max_compute_workgroup_size_x/y"
        ));
    }
    if x * y > l.max_compute_invocations_per_workgroup {
        return Err(format!(
            "{field}: {} invocations exceed max_compute_invocations_per_workgroup {}",
            x * y,
            l.max_compute_invocations_per_workgroup
        ));
    }
    Ok(())
}

fn check_tile(field: &str, t: &MatmulTile, l: &Limits) -> Result<(), String> {
    check_workgroup(field, t.workgroup, l)?;
    if t.per_thread.contains(&0) || t.k_step == 0 {
        return Err(format!("{field}: per_thread and k_step must be positive"));
    }
    if !t.per_thread[0].is_multiple_of(4) {
        return Err(format!(
            "{field}: per_thread[0] (N) must be a multiple of 4 for vec4 loads"
        ));
    }
    let threads = t.workgroup[0] * t.workgroup[1];
    // Each thread loads an equal share of the A and B tiles.
    if !(t.tile_m() * t.k_step).is_multiple_of(threads)
        || !(t.k_step * t.tile_n()).is_multiple_of(threads)
    {
        return Err(format!(
            "{field}: tile loads do not divide evenly over {threads} threads"
        ));
    }
    if t.workgroup_bytes() > l.max_compute_workgroup_storage_size {
        return Err(format!(
            "{field}: tiles need {} bytes of workgroup memory, over max_compute_workgroup_storage_size {}",
            t.workgroup_bytes(),
            l.max_compute_workgroup_storage_size
        ));
    }
    Ok(())
}
