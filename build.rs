//! Compiles `proto/` with a pure-Rust protobuf compiler (no `protoc` needed) and
//! generates proto3-canonical JSON (serde) impls alongside the prost types.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/sidetrace/v1/record.proto",
        "proto/sidetrace/v1/journal.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("sidetrace_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    prost_build::Config::new()
        .compile_well_known_types()
        // Canonical JSON for timestamps needs our own type (see record/timestamp.rs).
        .extern_path(".google.protobuf.Timestamp", "crate::record::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors)?;

    let set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .build(&[".sidetrace"])?;
    Ok(())
}
