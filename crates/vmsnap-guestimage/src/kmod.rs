//! Picking the kernel modules the guest needs and the order to load them in.
//!
//! busybox `insmod` loads one file and resolves nothing, so the builder
//! computes the order once: dependencies first, as `modules.dep` describes
//! them. When the kernel package ships no `modules.dep` (Debian's do not), the
//! same lines are made from each module's `.modinfo` `depends=` entry.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::command::HostCommand;
use crate::recipe::WantedModule;
use crate::{BuildError, modinfo};

/// Module name to the names of the modules it needs loaded first.
pub(crate) type DepGraph = BTreeMap<String, Vec<String>>;

/// A module chosen for the guest.
#[derive(Debug)]
pub(crate) struct Module {
    /// Path under `/lib/modules/<release>/`, always ending in `.ko` (uncompressed).
    pub(crate) path: String,
    /// The uncompressed module.
    pub(crate) contents: Vec<u8>,
    /// Names of its direct and indirect dependencies.
    pub(crate) depends: Vec<String>,
}

/// The modules of one kernel release, as unpacked from its package.
pub(crate) struct ModuleTree {
    root: PathBuf,
    release: String,
    /// Module name to its file, relative to `root`.
    files: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

impl ModuleTree {
    /// Indexes `root` (a `lib/modules/<release>` directory).
    pub(crate) fn open(root: &Path, release: &str) -> Result<Self, BuildError> {
        let mut files = BTreeMap::new();
        index_modules(root, Path::new(""), &mut files)?;
        let builtin_list = root.join("modules.builtin");
        let builtin = match fs::read_to_string(&builtin_list) {
            Ok(text) => text.lines().filter_map(module_name).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(BuildError::io("read", builtin_list)(e)),
        };
        Ok(Self { root: root.to_path_buf(), release: release.to_owned(), files, builtin })
    }

    /// The wanted modules that are not built in, with their dependencies, in load order.
    pub(crate) fn select(&self, wanted: &[WantedModule]) -> Result<Vec<(String, Module)>, BuildError> {
        let mut roots = Vec::new();
        for module in wanted {
            if self.files.contains_key(module.name) {
                roots.push(module.name.to_owned());
            } else if module.required && !self.builtin.contains(module.name) {
                return Err(BuildError::ModuleMissing {
                    module: module.name.to_owned(),
                    kernel_release: self.release.clone(),
                });
            }
        }
        let mut contents = BTreeMap::new();
        let graph = match fs::read_to_string(self.root.join("modules.dep")) {
            Ok(text) => parse_modules_dep(&text),
            Err(_) => self.graph_from_modinfo(&roots, &mut contents)?,
        };
        let order = load_order(&graph, &roots).map_err(BuildError::ModuleDependencies)?;
        let mut selected = Vec::new();
        for name in order {
            let contents = match contents.remove(&name) {
                Some(contents) => contents,
                None => self.read(&name)?,
            };
            let file = &self.files[&name];
            let mut depends = Vec::new();
            collect_depends(&graph, &name, &mut depends);
            let module = Module { path: uncompressed_path(file), contents, depends };
            selected.push((name, module));
        }
        Ok(selected)
    }

    /// Builds the dependency lines of `roots` and everything they need from `.modinfo`.
    fn graph_from_modinfo(
        &self,
        roots: &[String],
        contents: &mut BTreeMap<String, Vec<u8>>,
    ) -> Result<DepGraph, BuildError> {
        let mut graph = DepGraph::new();
        let mut pending: Vec<String> = roots.to_vec();
        while let Some(name) = pending.pop() {
            if graph.contains_key(&name) {
                continue;
            }
            let bytes = self.read(&name)?;
            let depends = modinfo::depends(&bytes).map_err(|reason| BuildError::ModuleInfo {
                path: self.root.join(&self.files[&name]),
                reason,
            })?;
            pending.extend(depends.iter().cloned());
            graph.insert(name.clone(), depends);
            contents.insert(name, bytes);
        }
        Ok(graph)
    }

    /// The uncompressed contents of module `name`.
    fn read(&self, name: &str) -> Result<Vec<u8>, BuildError> {
        let Some(file) = self.files.get(name) else {
            return Err(BuildError::ModuleMissing {
                module: name.to_owned(),
                kernel_release: self.release.clone(),
            });
        };
        let path = self.root.join(file);
        let decompressor = match path.extension().and_then(|e| e.to_str()) {
            Some("xz") => Some(("xz", "xz-utils")),
            Some("zst") => Some(("zstd", "zstd")),
            Some("gz") => Some(("gzip", "gzip")),
            _ => None,
        };
        match decompressor {
            Some((program, package)) => HostCommand::new(program, package).arg("-dc").arg(&path).stdout(),
            None => fs::read(&path).map_err(BuildError::io("read", path)),
        }
    }
}

fn index_modules(root: &Path, dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> Result<(), BuildError> {
    let full = root.join(dir);
    let entries = match fs::read_dir(&full) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BuildError::io("read directory", full)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(BuildError::io("read directory", &full))?;
        let relative = dir.join(entry.file_name());
        let file_type = entry.file_type().map_err(BuildError::io("inspect", entry.path()))?;
        if file_type.is_dir() {
            index_modules(root, &relative, files)?;
        } else if let Some(name) = relative.to_str().and_then(module_name) {
            files.insert(name, relative);
        }
    }
    Ok(())
}

/// The module name of a path such as `kernel/drivers/virtio/virtio-rng.ko.xz`.
fn module_name(path: &str) -> Option<String> {
    let file = path.trim().rsplit('/').next()?;
    let stem =
        ["", ".xz", ".zst", ".gz"].iter().find_map(|suffix| file.strip_suffix(&format!(".ko{suffix}")))?;
    Some(stem.replace('-', "_"))
}

fn uncompressed_path(file: &Path) -> String {
    let path = file.to_string_lossy();
    let end = path.rfind(".ko").map_or(path.len(), |i| i + 3);
    path[..end].to_owned()
}

/// Parses `modules.dep`: `kernel/a.ko: kernel/b.ko kernel/c.ko` per line.
pub(crate) fn parse_modules_dep(text: &str) -> DepGraph {
    text.lines()
        .filter_map(|line| {
            let (module, depends) = line.split_once(':')?;
            let depends = depends.split_whitespace().filter_map(module_name).collect();
            Some((module_name(module)?, depends))
        })
        .collect()
}

/// Orders `roots` and their dependencies so that every module comes after the
/// modules it depends on; otherwise the order of `roots` is kept.
pub(crate) fn load_order(graph: &DepGraph, roots: &[String]) -> Result<Vec<String>, String> {
    fn visit(
        graph: &DepGraph,
        name: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        if done.contains(name) {
            return Ok(());
        }
        if path.iter().any(|n| n == name) {
            return Err(format!("dependency cycle {} -> {name}", path.join(" -> ")));
        }
        let depends =
            graph.get(name).ok_or_else(|| format!("{name} is needed but not listed in modules.dep"))?;
        path.push(name.to_owned());
        for dependency in depends {
            visit(graph, dependency, path, done, order)?;
        }
        path.pop();
        done.insert(name.to_owned());
        order.push(name.to_owned());
        Ok(())
    }
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    for root in roots {
        visit(graph, root, &mut Vec::new(), &mut done, &mut order)?;
    }
    Ok(order)
}

fn collect_depends(graph: &DepGraph, name: &str, into: &mut Vec<String>) {
    for dependency in graph.get(name).into_iter().flatten() {
        if !into.contains(dependency) {
            into.push(dependency.clone());
            collect_depends(graph, dependency, into);
        }
    }
}

/// `modules.dep` for the modules shipped in the guest, so that `modprobe` works there too.
pub(crate) fn modules_dep_text(selected: &[(String, Module)]) -> String {
    let paths: BTreeMap<&str, &str> = selected.iter().map(|(n, m)| (n.as_str(), m.path.as_str())).collect();
    let mut text = String::new();
    for (_, module) in selected {
        text.push_str(&module.path);
        text.push(':');
        for dependency in &module.depends {
            if let Some(path) = paths.get(dependency.as_str()) {
                text.push(' ');
                text.push_str(path);
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
#[path = "kmod_tests.rs"]
mod tests;
