//! WGSL helper functions kernels call for what WGSL's builtins do not do
//! (or do not define for every input): `erf`, NaN-aware min/max, integer
//! powers, Python-style modulo, IEEE class tests. A kernel lists the
//! helpers it uses by name and gets exactly those in its module.

/// The WGSL source of helper `name`.
pub fn source(name: &str) -> &'static str {
    match name {
        "is_nan" => {
            "fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }\n"
        }
        // A float from its bits, evaluated at run time: WGSL makes a
        // const-expression that evaluates to inf or NaN a shader-creation
        // error (Chrome's Tint enforces it; naga does not), so non-finite
        // literals are calls (see `ops::index::literal`).
        "f32_bits" => "fn f32_bits(b: u32) -> f32 { return bitcast<f32>(b); }\n",
        "is_inf" => {
            "fn is_inf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }\n"
        }
        // Abramowitz & Stegun 7.1.26: |error| < 1.5e-7.
        "erf" => concat!(
            "fn erf_(x: f32) -> f32 {\n",
            "    let t = 1.0 / (1.0 + 0.3275911 * abs(x));\n",
            "    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);\n",
            "    return select(-y, y, x >= 0.0);\n",
            "}\n"
        ),
        // max/min that return NaN if either side is NaN, as ONNX does.
        "fmax" => concat!(
            "fn fmax(a: f32, b: f32) -> f32 {\n",
            "    if ((bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u) { return a; }\n",
            "    if ((bitcast<u32>(b) & 0x7fffffffu) > 0x7f800000u) { return b; }\n",
            "    return max(a, b);\n",
            "}\n"
        ),
        "fmin" => concat!(
            "fn fmin(a: f32, b: f32) -> f32 {\n",
            "    if ((bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u) { return a; }\n",
            "    if ((bitcast<u32>(b) & 0x7fffffffu) > 0x7f800000u) { return b; }\n",
            "    return min(a, b);\n",
            "}\n"
        ),
        // pow for any sign of base: negative bases need an integral exponent.
        "powf" => concat!(
            "fn powf(x: f32, y: f32) -> f32 {\n",
            "    if (y == 0.0) { return 1.0; }\n",
            "    if (x >= 0.0) { return pow(x, y); }\n",
            "    if (y != floor(y)) { return f32_bits(0x7fc00000u); }\n",
            "    let m = pow(-x, y);\n",
            "    return select(m, -m, (abs(y) % 2.0) == 1.0);\n",
            "}\n"
        ),
        "powi" => concat!(
            "fn powi(x: i32, y: i32) -> i32 {\n",
            "    var r = 1; var b = x; var e = y;\n",
            "    if (e < 0) { return select(0, select(-1, 1, (e & 1) == 0), x == -1) + select(0, 1, x == 1); }\n",
            "    loop { if (e == 0) { break; } if ((e & 1) == 1) { r = r * b; } b = b * b; e = e >> 1u; }\n",
            "    return r;\n",
            "}\n"
        ),
        "powu" => concat!(
            "fn powu(x: u32, y: u32) -> u32 {\n",
            "    var r = 1u; var b = x; var e = y;\n",
            "    loop { if (e == 0u) { break; } if ((e & 1u) == 1u) { r = r * b; } b = b * b; e = e >> 1u; }\n",
            "    return r;\n",
            "}\n"
        ),
        // Python-style modulo: the result takes the divisor's sign.
        "pymod_f" => concat!(
            "fn pymod_f(a: f32, b: f32) -> f32 {\n",
            // WGSL's a % b is a - b * trunc(a / b), NaN for an infinite b
            // where Python (and C's fmod) keep a finite a.
            "    let finite_a = (bitcast<u32>(a) & 0x7fffffffu) < 0x7f800000u;\n",
            "    let infinite_b = (bitcast<u32>(b) & 0x7fffffffu) == 0x7f800000u;\n",
            "    let r = select(a % b, a, finite_a && infinite_b);\n",
            "    return select(r, r + b, r != 0.0 && ((r < 0.0) != (b < 0.0)));\n",
            "}\n"
        ),
        "pymod_i" => concat!(
            "fn pymod_i(a: i32, b: i32) -> i32 {\n",
            "    if (b == 0) { return 0; }\n",
            "    let r = a % b;\n",
            "    return select(r, r + b, r != 0 && ((r < 0) != (b < 0)));\n",
            "}\n"
        ),
        "fmod_i" => {
            "fn fmod_i(a: i32, b: i32) -> i32 { if (b == 0) { return 0; } return a % b; }\n"
        }
        "div_i" => "fn div_i(a: i32, b: i32) -> i32 { if (b == 0) { return 0; } return a / b; }\n",
        "div_u" => {
            "fn div_u(a: u32, b: u32) -> u32 { if (b == 0u) { return 0u; } return a / b; }\n"
        }
        "mod_u" => {
            "fn mod_u(a: u32, b: u32) -> u32 { if (b == 0u) { return 0u; } return a % b; }\n"
        }
        // Float to int as Rust's `as`: NaN to 0, saturating at the bounds.
        "f2i" => concat!(
            "fn f2i(x: f32, lo: f32, hi: f32) -> i32 {\n",
            "    if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) { return 0; }\n",
            "    return i32(clamp(trunc(x), lo, hi));\n",
            "}\n"
        ),
        "f2u" => concat!(
            "fn f2u(x: f32, hi: f32) -> u32 {\n",
            "    if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) { return 0u; }\n",
            "    return u32(clamp(trunc(x), 0.0, hi));\n",
            "}\n"
        ),
        // Reflects x into [lo, hi] by bouncing off the borders (GridSample).
        "reflect" => concat!(
            "fn reflect(x: f32, lo: f32, hi: f32) -> f32 {\n",
            "    let range = hi - lo;\n",
            "    if (range <= 0.0) { return lo; }\n",
            "    if (x >= lo && x <= hi) { return x; }\n",
            "    let from_low = x < lo;\n",
            "    let d = select(x - hi, lo - x, from_low);\n",
            "    let n = floor(d / range);\n",
            "    let r = d - n * range;\n",
            "    let even = (i32(n) % 2) == 0;\n",
            "    return select(hi - r, lo + r, from_low == even);\n",
            "}\n"
        ),
        // Keys' cubic convolution weights with a = -0.75 (GridSample).
        "cubic4" => concat!(
            "fn cubic4(t: f32) -> vec4<f32> {\n",
            "    let a = -0.75;\n",
            "    let x0 = t + 1.0; let x3 = 2.0 - t; let x1 = t; let x2 = 1.0 - t;\n",
            "    return vec4<f32>(((a * x0 - 5.0 * a) * x0 + 8.0 * a) * x0 - 4.0 * a,\n",
            "        ((a + 2.0) * x1 - (a + 3.0)) * x1 * x1 + 1.0,\n",
            "        ((a + 2.0) * x2 - (a + 3.0)) * x2 * x2 + 1.0,\n",
            "        ((a * x3 - 5.0 * a) * x3 + 8.0 * a) * x3 - 4.0 * a);\n",
            "}\n"
        ),
        other => panic!("no WGSL helper named '{other}'"),
    }
}
