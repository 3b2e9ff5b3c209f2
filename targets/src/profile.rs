//! The profile schema. Field names follow the WebGPU spec's limit names in
//! snake case, so a profile reads against `GPUSupportedLimits` directly.

use serde::{Deserialize, Serialize};

/// One target: a browser (or device class) and how to compile for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The name users pass to `--target`.
    pub name: String,
    /// One line for `wpc targets`.
    pub description: String,
    pub browser: Browser,
    /// Backends in the order the runtime should try them.
    pub backends: Vec<Backend>,
    pub webgpu: WebGpu,
    pub wasm: Wasm,
    pub webnn: WebNn,
    /// Precision weights are stored in by default: `f32`, `f16` (float32
    /// for now; the profile must offer shader-f16), or an integer width
    /// (`int8`, `int4`, `int3`, `int2`) that quantizes every MatMul, Gemm
    /// and embedding table when the compile does not say otherwise.
    pub precision: Precision,
    /// How much memory (MiB) a model may use on this target, weights
    /// included. Unbounded dims default to sizes within it, and a model
    /// whose float weights alone exceed it is fitted to it (`--fit`) when
    /// the compile does not choose a precision.
    pub memory_budget_mib: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Browser {
    /// e.g. "Chrome", "Safari".
    pub name: String,
    /// The first version with everything this profile relies on.
    pub min_version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[serde(rename = "webgpu")]
    WebGpu,
    #[serde(rename = "webnn")]
    WebNn,
    Wasm,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebGpu {
    /// The limits compiled kernels may rely on; the runtime checks the
    /// adapter offers at least these before choosing the variant.
    pub limits: Limits,
    /// Optional features the kernels may use.
    pub features: Vec<Feature>,
    pub kernels: KernelTuning,
}

/// A subset of `GPUSupportedLimits`, named as in the WebGPU spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroup_size_y: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
}

impl Limits {
    /// The defaults every WebGPU implementation must offer (spec §3.6.2,
    /// "Limits"): no profile may claim less.
    pub const SPEC_DEFAULTS: Limits = Limits {
        max_compute_workgroup_size_x: 256,
        max_compute_workgroup_size_y: 256,
        max_compute_invocations_per_workgroup: 256,
        max_compute_workgroup_storage_size: 16384,
        max_compute_workgroups_per_dimension: 65535,
        max_storage_buffer_binding_size: 134_217_728,
        max_buffer_size: 268_435_456,
        max_storage_buffers_per_shader_stage: 8,
    };
}

/// Optional WebGPU features (`GPUFeatureName` with `_` for `-`, since RON
/// enum variants are identifiers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Feature {
    #[serde(rename = "shader_f16")]
    ShaderF16,
    #[serde(rename = "subgroups")]
    Subgroups,
}

impl Feature {
    /// The name in `GPUFeatureName` (and in bundle manifests).
    pub fn webgpu_name(self) -> &'static str {
        match self {
            Feature::ShaderF16 => "shader-f16",
            Feature::Subgroups => "subgroups",
        }
    }
}

/// Workgroup sizes and tiles per kernel class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelTuning {
    /// Threads per workgroup of one-thread-per-element kernels
    /// (elementwise, data movement, gathers).
    pub elementwise: u32,
    /// Threads cooperating on one reduction (reductions, softmax, norms).
    pub reduction: u32,
    /// Threads per workgroup of pooling and other windowed kernels.
    pub pool: u32,
    pub matmul: MatmulTile,
    /// Conv runs as an implicit GEMM with its own tile.
    pub conv: MatmulTile,
}

/// A register-blocked GEMM tile: a workgroup of `workgroup[0] x workgroup[1]`
/// threads, each computing `per_thread[0] x per_thread[1]` outputs (N x M),
/// stepping through K by `k_step`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatmulTile {
    /// Threads along N (x) and M (y).
    pub workgroup: [u32; 2],
    /// Outputs per thread along N and M.
    pub per_thread: [u32; 2],
    pub k_step: u32,
}

impl MatmulTile {
    /// Output columns one workgroup computes.
    pub fn tile_n(&self) -> u32 {
        self.workgroup[0] * self.per_thread[0]
    }
    /// Output rows one workgroup computes.
    pub fn tile_m(&self) -> u32 {
        self.workgroup[1] * self.per_thread[1]
    }
    /// Workgroup memory of the A and B tiles, in bytes (f32).
    pub fn workgroup_bytes(&self) -> u32 {
        (self.tile_m() * self.k_step + self.k_step * self.tile_n()) * 4
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wasm {
    pub simd: bool,
    pub relaxed_simd: bool,
    pub threads: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebNn {
    pub available: bool,
    /// ONNX op names the browser's WebNN implementation is known to run.
    pub ops: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    #[serde(rename = "f32")]
    F32,
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "int8")]
    Int8,
    #[serde(rename = "int4")]
    Int4,
    #[serde(rename = "int3")]
    Int3,
    #[serde(rename = "int2")]
    Int2,
}

impl Precision {
    /// Bits per quantized weight; `None` for the float precisions.
    pub fn bits(self) -> Option<u32> {
        match self {
            Precision::F32 | Precision::F16 => None,
            Precision::Int8 => Some(8),
            Precision::Int4 => Some(4),
            Precision::Int3 => Some(3),
            Precision::Int2 => Some(2),
        }
    }
}
