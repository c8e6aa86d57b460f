//! The declared layers of the crate, and the test that keeps the code to
//! them (the README's "Layout" draws the same picture).
//!
//! A module may use modules of its own layer and of the layers below; it
//! may not use a higher layer, and modules of one layer may not use each
//! other in a cycle. The test reads every `crate::<module>` path in `src/`
//! outside `#[cfg(test)]` code. What still breaks the rule is listed in
//! [`KNOWN`] with the step that removes it; the test fails on anything
//! else, and on a listed edge that no longer breaks it (so the list only
//! shrinks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top; a module is named by its first path element under `src/`.
const LAYERS: &[(&str, &[&str])] = &[
    // What every layer may use: errors, the config, the CRI's fixed names
    // and types, file utilities.
    ("base", &["error", "config", "cri", "fsutil", "proto"]),
    // The Docker adapter and the pure translation between CRI and Docker.
    ("docker", &["docker"]),
    // What the node keeps: the container index, CRI log copies, the pod
    // network, streaming sessions, cgroup stats, sandbox records.
    (
        "node state",
        &[
            "index",
            "logs",
            "network",
            "kernel_stats",
            "streaming",
            "sandbox_record",
        ],
    ),
    // The CRI services and the state they share.
    ("services", &["context", "runtime", "image"]),
    // The gRPC edge: listener, HTTP/2 fix-up, handlers.
    ("edge", &["server", "authority", "listener"]),
    // The process: start-up, signals, shutdown.
    ("process", &["daemon", "lib", "main"]),
];

/// Edges that still break the layering, each with the step that ends it.
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "context",
        "runtime",
        "Context holds runtime state (event hub, locks, pause image, stats facts): each service owns its state",
    ),
    ("runtime", "context", "the other half of the Context cycle"),
    (
        "context",
        "image",
        "Context holds the image service's state: the image service owns it",
    ),
    ("image", "context", "the other half of the Context cycle"),
    (
        "runtime",
        "image",
        "part of the Context cycle (runtime → image → context → runtime); fine once Context is gone",
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The module a file under `src/` belongs to.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without comments and without its `#[cfg(test)]`
/// items (tests may reach anywhere).
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut cfg_test = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        if skip_depth.is_none() && code.trim() == "#[cfg(test)]" {
            cfg_test = true;
            continue;
        }
        if cfg_test && skip_depth.is_none() {
            cfg_test = false;
            if opens > closes {
                skip_depth = Some(depth);
            } else {
                // A one-line item.
                continue;
            }
        }
        depth += opens - closes;
        match skip_depth {
            Some(d) if depth <= d => skip_depth = None,
            Some(_) => {}
            None => {
                out.push_str(code);
                out.push('\n');
            }
        }
    }
    out
}

/// The modules `code` names as `crate::<module>`; the root's re-exports
/// `crate::Error` and `crate::Result` are the error module.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = code[i + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let name = match name.as_str() {
            "Error" | "Result" => "error".to_string(),
            _ => name,
        };
        if !name.is_empty() {
            used.insert(name);
        }
    }
    used
}

/// Module → the modules it uses, for every `.rs` file under `dir`.
fn edges(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") && !p.ends_with("layers.rs") {
                let from = module_of(p.strip_prefix(dir).unwrap_or(&p));
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let used = used_modules(&production_code(&text));
                let targets = graph.entry(from.clone()).or_default();
                targets.extend(used.into_iter().filter(|m| *m != from));
            }
        }
    }
    graph
}

/// Whether `to` reaches `from` in `graph`.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, to: &str, from: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![to.to_string()];
    while let Some(m) = stack.pop() {
        if m == from {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(graph.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

/// The edges that break the layering: upward, or in a cycle within a
/// layer (a cycle across layers has an upward edge, which is the one
/// reported).
fn violations(
    graph: &BTreeMap<String, BTreeSet<String>>,
) -> Result<BTreeSet<(String, String)>, String> {
    let mut found = BTreeSet::new();
    for (from, targets) in graph {
        let lf = layer_of(from).ok_or_else(|| format!("module {from} is in no layer"))?;
        for to in targets {
            let lt = layer_of(to).ok_or_else(|| format!("module {to} is in no layer"))?;
            if lt > lf || (lt == lf && reaches(graph, to, from)) {
                found.insert((from.clone(), to.clone()));
            }
        }
    }
    Ok(found)
}

#[test]
fn the_code_keeps_to_its_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = edges(&src);
    assert!(
        graph.contains_key("runtime") && graph.contains_key("docker"),
        "{graph:?}"
    );
    let found = violations(&graph).unwrap_or_else(|e| panic!("{e}"));
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    assert!(
        new.is_empty(),
        "imports that break the layers (upward, or in a cycle): {new:?}"
    );
    let fixed: Vec<_> = known.difference(&found).collect();
    assert!(
        fixed.is_empty(),
        "no longer broken: take these out of layers::KNOWN: {fixed:?}"
    );
}

#[test]
fn the_reader_finds_uses_and_skips_tests_and_comments() {
    let code = "use crate::docker::labels;\n\
                // use crate::server;\n\
                fn f() -> crate::Result<()> { crate::fsutil::x() }\n\
                #[cfg(test)]\n\
                mod tests {\n    use crate::runtime;\n    fn g() { }\n}\n\
                #[cfg(test)]\n\
                use crate::image;\n\
                fn h() { let _ = my_crate::daemon::x; }\n";
    let used = used_modules(&production_code(code));
    let want: BTreeSet<String> = ["docker", "error", "fsutil"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(used, want);
}

#[test]
fn an_upward_use_and_a_cycle_are_caught() {
    let graph = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let ok = graph(&[
        ("runtime", "docker"),
        ("server", "runtime"),
        ("index", "docker"),
    ]);
    assert!(violations(&ok).unwrap().is_empty());
    let upward = graph(&[("docker", "runtime")]);
    assert_eq!(
        violations(&upward).unwrap(),
        BTreeSet::from([("docker".to_string(), "runtime".to_string())])
    );
    let cycle = graph(&[("index", "logs"), ("logs", "index"), ("runtime", "index")]);
    assert_eq!(violations(&cycle).unwrap().len(), 2);
    assert!(violations(&graph(&[("nowhere", "docker")])).is_err());
}
