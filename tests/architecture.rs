//! The code map's promises, checked on the source: module dependencies (each file
//! a module, with the edges of a parent's re-exports) form no cycle — data flows
//! one way —, `http` is imported by nothing but the node wiring, and only `store`
//! issues SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::a::b` path a file names, reduced to the longest known module.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeSet<String> = all.iter().map(|f| module_of(&src, f)).collect();
    let mut g = BTreeMap::new();
    for f in &all {
        let me = module_of(&src, f);
        if me == "lib" || me == "main" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        // Test modules may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap();
        let mut deps = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let path: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            // The longest prefix that is a module of the crate.
            let dep = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(dep) = dep {
                if dep != me && !me.starts_with(&format!("{dep}::")) {
                    deps.insert(dep);
                }
            }
        }
        // A parent that re-exports a child (`pub use client::Client`) depends on it.
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("pub use ") {
                let child = rest.split("::").next().unwrap_or("");
                let full = if me.is_empty() {
                    child.to_owned()
                } else {
                    format!("{me}::{child}")
                };
                if modules.contains(&full) {
                    deps.insert(full);
                }
            }
        }
        g.insert(me, deps);
    }
    g
}

#[test]
fn module_dependencies_form_no_cycle() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(k) = path.iter().position(|p| p == m) {
            panic!("module cycle: {} -> {m}", path[k..].join(" -> "));
        }
        path.push(m.to_owned());
        for d in g.get(m).into_iter().flatten() {
            visit(d, g, path, done);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(m, &g, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_configuration_default_threshold_is_the_sdks() {
    assert_eq!(
        livenessd::config::ZellularConfig::default().threshold_percent,
        livenessd::zellular::DEFAULT_THRESHOLD_PERCENT
    );
}

#[test]
fn http_is_imported_by_nothing_but_the_node_wiring() {
    for (m, deps) in graph() {
        if deps.iter().any(|d| d == "http" || d.starts_with("http::")) {
            assert!(
                m == "node" || m.starts_with("http"),
                "{m} imports the http adapter"
            );
        }
    }
}

#[test]
fn only_the_store_issues_sql() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    for f in all {
        let m = module_of(&src, &f);
        if m.starts_with("store") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("sqlx::query"),
            "{m} issues SQL; only store may"
        );
    }
}
