//! boxoffice, the service: HTTP, auth, persistence and the wiring around the
//! sales engine in `boxoffice-actors`.
//!
//! **Invariant:** the engine decides every seat; this crate never arbitrates one
//! in SQL. It authenticates, routes each request to its event's actor, and makes
//! the actor's changes durable through the `PgJournal`.
//!
//! The layout follows a request: `http` (routes) → `state` (the registry of event
//! actors, in `boxoffice-actors`) → the actor and its inventory → `store::journal`.
//! ARCHITECTURE.md has the code map and which folder may depend on which.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod money;
pub mod payments;
pub mod startup;
pub mod state;
pub mod store;
pub mod workers;

pub use config::Settings;
pub use startup::Application;
pub use state::AppState;

/// The layout rules ARCHITECTURE.md states, checked on the source text: no
/// dependency cycle between the crate's top-level modules, and route modules that
/// never import each other.
#[cfg(test)]
mod layout_tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// `a` in every `crate::a…` of `text`, including `use crate::{a, b::c}`.
    fn crate_paths(text: &str) -> BTreeSet<String> {
        let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
        let mut found = BTreeSet::new();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                found.extend(group.split(',').map(|part| ident(part.trim())).filter(|s| !s.is_empty()));
            } else {
                found.insert(ident(rest));
            }
        }
        found
    }

    /// Top-level module → the top-level modules it uses.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files {
            let relative = file.strip_prefix(&src).expect("under src/");
            let first = relative.components().next().expect("a path").as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "main" || module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read source");
            let uses: Vec<String> = crate_paths(&text).into_iter().filter(|m| *m != module).collect();
            graph.entry(module).or_default().extend(uses);
        }
        graph
    }

    #[test]
    fn top_level_modules_form_no_cycle() {
        let graph = graph();
        assert!(graph.contains_key("http") && graph.contains_key("store"), "scanned the wrong tree: {graph:?}");
        // Depth-first search for a back edge; the path is the cycle to report.
        fn visit<'a>(
            node: &'a str,
            graph: &'a BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if done.contains(node) {
                return;
            }
            if let Some(at) = path.iter().position(|n| *n == node) {
                panic!("module cycle: {} -> {node}", path[at..].join(" -> "));
            }
            path.push(node);
            for next in graph.get(node).into_iter().flatten() {
                visit(next, graph, path, done);
            }
            path.pop();
            done.insert(node);
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            visit(node, &graph, &mut Vec::new(), &mut done);
        }
    }

    #[test]
    fn lower_layers_do_not_reach_up() {
        let graph = graph();
        for (module, forbidden) in [
            (
                "config",
                &["http", "state", "money", "store", "workers", "startup", "payments", "auth", "error", "cluster"][..],
            ),
            ("payments", &["http", "state", "money", "store", "workers", "startup", "auth", "error", "cluster"][..]),
            ("store", &["http", "state", "money", "workers", "startup", "auth", "error", "cluster"][..]),
            ("cluster", &["http", "state", "money", "workers", "startup", "auth", "payments"][..]),
            ("auth", &["http", "state", "money", "workers", "startup"][..]),
            ("state", &["http", "money", "workers", "startup"][..]),
            ("money", &["http", "workers", "startup"][..]),
            ("workers", &["http", "money", "startup"][..]),
            ("http", &["startup", "workers"][..]),
        ] {
            let uses = graph.get(module).cloned().unwrap_or_default();
            for up in forbidden {
                assert!(!uses.contains(*up), "{module} uses {up}");
            }
        }
    }

    #[test]
    fn route_modules_do_not_import_each_other() {
        let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/routes");
        let mut files = Vec::new();
        rust_files(&routes, &mut files);
        for file in files.iter().filter(|f| !f.ends_with("mod.rs")) {
            let text = std::fs::read_to_string(file).expect("read source");
            assert!(!text.contains("routes::"), "{} imports another route module", file.display());
        }
    }

    #[test]
    fn the_scanner_reads_grouped_imports() {
        let found = crate_paths("use crate::{auth::qr, store};\nlet x = crate::money::pay;");
        assert_eq!(found, ["auth", "money", "store"].into_iter().map(String::from).collect());
    }
}
