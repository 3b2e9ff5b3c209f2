//! One compute shader: its bindings, workgroup shape, dispatch size and
//! WGSL text. Op lowerings build [`Kernel`]s; [`Kernel::render`] turns one
//! into a complete WGSL module with a single entry point `main`.

use std::collections::BTreeSet;
use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::sym::Expr;

/// A storage buffer the kernel binds, at `@binding(position)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub name: String,
    pub word: Word,
    pub write: bool,
}

/// A compute kernel ready to render.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// A one-line comment at the top: op and shapes.
    pub label: String,
    pub bindings: Vec<Binding>,
    pub workgroup_size: [u32; 3],
    pub workgroups: [u32; 3],
    /// Helper functions from [`crate::helpers`] the body calls.
    pub helpers: BTreeSet<&'static str>,
    /// Module-scope declarations (workgroup arrays, constants).
    pub decls: String,
    /// Bindings declared as `array<vec4<f32>>` for vectorized loads.
    pub vec4_bindings: Vec<String>,
    /// Bytes of `var<workgroup>` memory the declarations take.
    pub workgroup_bytes: u32,
    /// The body of `main`.
    pub body: String,
    /// The sizes the kernel reads at run time (see [`Params`]).
    pub params: Params,
    /// Workgroup counts at run time, where they depend on dynamic sizes
    /// (`workgroups` is then made for the largest sizes when emitted).
    pub groups: Option<[Expr; 3]>,
    /// The sizes only the data decides that the kernel counts, each with
    /// the binding it writes it to (a `u32` at index 0).
    pub counts: Vec<(String, usize)>,
}

/// The dynamic sizes a kernel reads: each distinct [`Expr`] is a `u32`
/// slot of the uniform `params` (four to a `vec4`, as uniform arrays need
/// 16-byte elements), which the runtime fills per run. Constant sizes are
/// literals, so a kernel of static shapes has no uniform at all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(pub Vec<Expr>);

impl Params {
    /// WGSL for size `e` as a `u32`: a literal (`64u`) where it is a
    /// constant, else a read of its slot (`params[0].y`).
    pub fn size(&mut self, e: &Expr) -> String {
        if let Some(c) = e.as_const() {
            return format!("{c}u");
        }
        let k = self.0.iter().position(|p| p == e).unwrap_or_else(|| {
            self.0.push(e.clone());
            self.0.len() - 1
        });
        format!("params[{}].{}", k / 4, ["x", "y", "z", "w"][k % 4])
    }

    /// WGSL for size `e` as an `i32`, for index arithmetic that may go
    /// negative: a literal (`64`) where it is a constant, else its slot
    /// converted (`i32(params[0].y)`).
    pub fn signed(&mut self, e: &Expr) -> String {
        match e.as_const() {
            Some(c) => c.to_string(),
            None => format!("i32({})", self.size(e)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Kernel {
    pub fn new(label: impl Into<String>) -> Kernel {
        Kernel {
            label: label.into(),
            bindings: Vec::new(),
            workgroup_size: [1, 1, 1],
            workgroups: [1, 1, 1],
            helpers: BTreeSet::new(),
            decls: String::new(),
            workgroup_bytes: 0,
            vec4_bindings: Vec::new(),
            body: String::new(),
            params: Params::default(),
            groups: None,
            counts: Vec::new(),
        }
    }

    /// Adds a read-only binding named `name`.
    pub fn input(&mut self, name: &str, word: Word) -> &mut Kernel {
        self.bindings.push(Binding {
            name: name.into(),
            word,
            write: false,
        });
        self
    }

    /// Adds a read-write binding named `name`.
    pub fn output(&mut self, name: &str, word: Word) -> &mut Kernel {
        self.bindings.push(Binding {
            name: name.into(),
            word,
            write: true,
        });
        self
    }

    /// Threads are spread over a 1-D range of `n` items in workgroups of
    /// `size`; the body sees the item index as `i` (already bounds-checked).
    /// Dispatches wider than `max_groups` fold into a second dimension.
    pub fn one_per_item(
        &mut self,
        n: usize,
        size: u32,
        max_groups: u32,
        body: &str,
    ) -> &mut Kernel {
        self.one_per_item_of(&Expr::constant(n as i64), size, max_groups, body)
    }

    /// [`Kernel::one_per_item`] over a count that may be dynamic: the
    /// bounds check reads it from the parameters, and the workgroup
    /// counts are computed at run time.
    pub fn one_per_item_of(
        &mut self,
        n: &Expr,
        size: u32,
        max_groups: u32,
        body: &str,
    ) -> &mut Kernel {
        self.workgroup_size = [size, 1, 1];
        let groups = n
            .add(&Expr::constant(i64::from(size) - 1))
            .floor_div(&Expr::constant(i64::from(size)));
        self.spread(&groups, max_groups);
        let n = self.params.size(n);
        self.body = format!(
            "    let i = (wid.y * nwg.x + wid.x) * {size}u + lidx;\n    if (i >= {n}) {{ return; }}\n{body}"
        );
        self
    }

    /// Workgroup counts for `groups` groups (see [`grid`]); computed at
    /// run time where `groups` is dynamic.
    fn spread(&mut self, groups: &Expr, max_groups: u32) {
        match groups.as_const() {
            Some(g) => self.workgroups = grid(g.max(0) as usize, max_groups),
            None => {
                let max = Expr::constant(i64::from(max_groups));
                let x = groups.min_of(&max);
                let y = groups
                    .add(&Expr::constant(i64::from(max_groups) - 1))
                    .floor_div(&max);
                self.groups = Some([x, y, Expr::constant(1)]);
            }
        }
    }

    /// One workgroup per item of `n`: the body sees the item as `row`
    /// (uniform across the workgroup, so barriers are allowed) and the
    /// thread's lane as `lidx`.
    pub fn one_group_per_item(
        &mut self,
        n: usize,
        size: u32,
        max_groups: u32,
        body: &str,
    ) -> &mut Kernel {
        self.one_group_per_item_of(&Expr::constant(n as i64), size, max_groups, body)
    }

    /// [`Kernel::one_group_per_item`] over a count that may be dynamic.
    pub fn one_group_per_item_of(
        &mut self,
        n: &Expr,
        size: u32,
        max_groups: u32,
        body: &str,
    ) -> &mut Kernel {
        self.workgroup_size = [size, 1, 1];
        self.spread(n, max_groups);
        let n = self.params.size(n);
        self.body = format!(
            "    let row = wid.y * nwg.x + wid.x;\n    if (row >= {n}) {{ return; }}\n{body}"
        );
        self
    }

    /// Reads binding `input` from binding `output` instead, dropping
    /// `input` (its index is returned, for the caller to drop its
    /// argument): the plan put both tensors in one buffer, which WebGPU
    /// cannot bind twice in a dispatch once one binding writes. Only for
    /// kernels whose each invocation reads the elements it writes before
    /// writing them, and none other (an elementwise kernel and an input of
    /// the output's shape, read as `input[i]`).
    pub fn read_from_output(&mut self, input: &str, output: &str) -> Option<usize> {
        let at = self.bindings.iter().position(|b| b.name == input)?;
        let out = self.bindings.iter().find(|b| b.name == output)?;
        let vec4 = |name: &str| self.vec4_bindings.iter().any(|v| v == name);
        if out.word != self.bindings[at].word || !out.write || vec4(input) || vec4(output) {
            return None;
        }
        self.bindings.remove(at);
        self.body = self
            .body
            .replace(&format!("{input}["), &format!("{output}["));
        Some(at)
    }

    /// The complete WGSL module.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// wpc: {}", self.label);
        for (i, b) in self.bindings.iter().enumerate() {
            let access = if b.write { "read_write" } else { "read" };
            let elem = if self.vec4_bindings.contains(&b.name) {
                format!("vec4<{}>", b.word.wgsl())
            } else {
                b.word.wgsl().to_string()
            };
            let _ = writeln!(
                s,
                "@group(0) @binding({i}) var<storage, {access}> {}: array<{elem}>;",
                b.name
            );
        }
        // Non-finite literals call `f32_bits` wherever a kernel (or a
        // helper it calls) wrote them.
        let uses_bits = [&self.body, &self.decls]
            .iter()
            .any(|t| t.contains("f32_bits("))
            || self
                .helpers
                .iter()
                .any(|h| crate::helpers::source(h).contains("f32_bits("));
        if !self.params.is_empty() {
            let _ = writeln!(
                s,
                "@group(0) @binding({}) var<uniform> params: array<vec4<u32>, {}>;",
                self.bindings.len(),
                self.params.0.len().div_ceil(4)
            );
        }
        let bits = (uses_bits && !self.helpers.contains("f32_bits")).then_some("f32_bits");
        for h in self.helpers.iter().copied().chain(bits) {
            s.push_str(crate::helpers::source(h));
        }
        s.push_str(&self.decls);
        let [x, y, z] = self.workgroup_size;
        let _ = writeln!(s, "@compute @workgroup_size({x}, {y}, {z})");
        s.push_str(
            "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {\n",
        );
        s.push_str(&self.body);
        s.push_str("}\n");
        s
    }
}

/// Workgroup counts for `groups` groups with at most `max` per dimension.
pub fn grid(groups: usize, max: u32) -> [u32; 3] {
    let max = max as usize;
    if groups <= max {
        [groups.max(1) as u32, 1, 1]
    } else {
        let x = max;
        [x as u32, groups.div_ceil(x) as u32, 1]
    }
}
