use super::*;

#[test]
fn every_builtin_profile_loads_and_is_named_after_itself() {
    let profiles = all_builtin().unwrap();
    assert_eq!(profiles.len(), 7);
    for (p, name) in profiles.iter().zip(builtin_names()) {
        assert_eq!(p.name, name);
    }
}

#[test]
fn chrome_and_safari_tune_differently() {
    let chrome = builtin("chrome").unwrap();
    let safari = builtin("safari").unwrap();
    assert_ne!(
        chrome.webgpu.kernels.elementwise,
        safari.webgpu.kernels.elementwise
    );
    assert_ne!(chrome.webgpu.kernels.matmul, safari.webgpu.kernels.matmul);
}

#[test]
fn unknown_target_lists_the_known_ones() {
    let err = builtin("netscape").unwrap_err().to_string();
    assert!(err.contains("unknown target 'netscape'"), "{err}");
    assert!(err.contains("safari"), "{err}");
}

fn baseline_text() -> String {
    include_str!("../profiles/webgpu-baseline.ron").to_string()
}

fn parse_err(text: &str) -> String {
    Profile::parse(text, "my.ron").unwrap_err().to_string()
}

#[test]
fn unknown_field_is_rejected_with_its_name() {
    let text = baseline_text().replace("precision: f32,", "precision: f32,\n    colour: 3,");
    let err = parse_err(&text);
    assert!(
        err.starts_with("my.ron: not a valid target profile"),
        "{err}"
    );
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn limit_below_spec_minimum_is_rejected() {
    let text = baseline_text().replace(
        "max_storage_buffers_per_shader_stage: 8,",
        "max_storage_buffers_per_shader_stage: 4,",
    );
    let err = parse_err(&text);
    assert!(
        err.contains("max_storage_buffers_per_shader_stage: 4 is below"),
        "{err}"
    );
}

#[test]
fn workgroup_over_the_profile_limits_is_rejected() {
    let text = baseline_text().replace("elementwise: 64,", "elementwise: 512,");
    let err = parse_err(&text);
    assert!(err.contains("webgpu.kernels.elementwise"), "{err}");
}

#[test]
fn tile_over_workgroup_memory_is_rejected() {
    let text = baseline_text().replace(
        "matmul: (workgroup: (8, 8), per_thread: (4, 4), k_step: 8)",
        "matmul: (workgroup: (16, 16), per_thread: (8, 8), k_step: 32)",
    );
    let err = parse_err(&text);
    assert!(
        err.contains("webgpu.kernels.matmul") && err.contains("workgroup memory"),
        "{err}"
    );
}

#[test]
fn f16_precision_needs_the_feature() {
    let text = baseline_text().replace("precision: f32,", "precision: f16,");
    assert!(parse_err(&text).contains("shader-f16"));
}

#[test]
fn user_profile_loads_from_a_file() {
    let dir = std::env::temp_dir().join(format!("wpc-targets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kiosk.ron");
    std::fs::write(
        &path,
        baseline_text().replace("\"webgpu-baseline\"", "\"kiosk\""),
    )
    .unwrap();
    assert_eq!(Profile::from_file(&path).unwrap().name, "kiosk");
    let missing = Profile::from_file(&dir.join("none.ron"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("none.ron: cannot read"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn integer_precisions_parse_and_give_their_bits() {
    for (name, bits) in [("int8", 8), ("int4", 4), ("int3", 3), ("int2", 2)] {
        let text = baseline_text().replace("precision: f32,", &format!("precision: {name},"));
        let p = Profile::parse(&text, "my.ron").unwrap();
        assert_eq!(p.precision.bits(), Some(bits), "{name}");
    }
    assert_eq!(Precision::F32.bits(), None);
    let err = parse_err(&baseline_text().replace("precision: f32,", "precision: int5,"));
    assert!(err.contains("int5"), "{err}");
}
