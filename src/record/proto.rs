//! The generated execution-record types (`proto/sidetrace/v1`), with their
//! proto3 canonical JSON (serde) implementations.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/sidetrace.v1.rs"));
include!(concat!(env!("OUT_DIR"), "/sidetrace.v1.serde.rs"));
