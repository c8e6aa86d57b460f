//! Our `proto/runtime/v1/api.proto` must carry exactly the wire contract of
//! the pinned CRI reference (`../shared/cri-api/runtime/v1/api.proto`): every
//! service, method (with streaming flags), message, enum, value and field
//! (name, number, type, label, oneof, proto3 optional, map-ness, deprecation).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

fn reference_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("DOCKERCRI_CRI_REFERENCE_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/cri-api")
}

fn compile(include: &Path) -> FileDescriptorSet {
    protox::compile(["runtime/v1/api.proto"], [include])
        .unwrap_or_else(|e| panic!("compiling {}: {e}", include.display()))
}

fn flatten(set: &FileDescriptorSet) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for file in &set.file {
        out.insert(format!("package {}", file.package()));
        for service in &file.service {
            out.insert(format!("service {}", service.name()));
            for m in &service.method {
                out.insert(format!(
                    "rpc {}.{}({}{}) -> ({}{})",
                    service.name(),
                    m.name(),
                    if m.client_streaming() { "stream " } else { "" },
                    m.input_type(),
                    if m.server_streaming() { "stream " } else { "" },
                    m.output_type()
                ));
            }
        }
        for e in &file.enum_type {
            flatten_enum(file.package(), e, &mut out);
        }
        for m in &file.message_type {
            flatten_message(file.package(), m, &mut out);
        }
    }
    out
}

fn flatten_enum(scope: &str, e: &EnumDescriptorProto, out: &mut BTreeSet<String>) {
    out.insert(format!("enum {scope}.{}", e.name()));
    for v in &e.value {
        out.insert(format!(
            "enum {scope}.{} {} = {}",
            e.name(),
            v.name(),
            v.number()
        ));
    }
}

fn flatten_message(scope: &str, m: &DescriptorProto, out: &mut BTreeSet<String>) {
    let name = format!("{scope}.{}", m.name());
    let map_entry = m.options.as_ref().is_some_and(|o| o.map_entry());
    out.insert(format!("message {name} map_entry={map_entry}"));
    for o in &m.oneof_decl {
        out.insert(format!("oneof {name}.{}", o.name()));
    }
    for f in &m.field {
        let deprecated = f.options.as_ref().is_some_and(|o| o.deprecated());
        out.insert(format!(
            "field {name}.{} = {} {:?} {:?} {} oneof={:?} optional={} deprecated={deprecated} json={}",
            f.name(),
            f.number(),
            f.label(),
            f.r#type(),
            f.type_name(),
            f.oneof_index,
            f.proto3_optional(),
            f.json_name(),
        ));
    }
    for nested in &m.nested_type {
        flatten_message(&name, nested, out);
    }
    for e in &m.enum_type {
        flatten_enum(&name, e, out);
    }
}

#[test]
fn our_proto_matches_the_pinned_cri_wire_contract() {
    let reference = reference_dir();
    assert!(
        reference.join("runtime/v1/api.proto").is_file(),
        "the CRI reference is missing at {} (set DOCKERCRI_CRI_REFERENCE_DIR)",
        reference.display()
    );
    let ours = flatten(&compile(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("proto"),
    ));
    let theirs = flatten(&compile(&reference));
    let missing: Vec<_> = theirs.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&theirs).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "wire contract differs\nmissing from ours:\n  {}\nonly in ours:\n  {}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        extra
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    let rpcs = ours.iter().filter(|s| s.starts_with("rpc ")).count();
    assert_eq!(rpcs, 41, "CRI v1 at cri-api v0.36.3 has 41 RPCs");
    assert!(
        ours.len() > 600,
        "suspiciously small contract: {}",
        ours.len()
    );
}
