use super::*;
use crate::modinfo::tests::module_elf;

/// Lines as depmod writes them for Debian's 6.1 cloud kernel (trimmed).
const SAMPLE_MODULES_DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
";

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn position(order: &[String], name: &str) -> usize {
    order.iter().position(|n| n == name).unwrap_or_else(|| panic!("{name} missing from {order:?}"))
}

#[test]
fn modules_dep_lines_become_a_graph_of_module_names() {
    let graph = parse_modules_dep(SAMPLE_MODULES_DEP);
    assert_eq!(graph["virtio"], ["virtio_ring"]);
    assert_eq!(graph["virtio_rng"], ["virtio", "virtio_ring"]);
    assert!(graph["virtio_ring"].is_empty());
}

#[test]
fn load_order_puts_every_dependency_first() {
    let graph = parse_modules_dep(SAMPLE_MODULES_DEP);
    let order = load_order(&graph, &names(&["virtio_pci", "virtio_net", "virtio_blk"])).unwrap();
    for (module, depends) in &graph {
        if order.contains(module) {
            for dependency in depends {
                assert!(position(&order, dependency) < position(&order, module), "{order:?}");
            }
        }
    }
    assert_eq!(order.len(), 9, "each module once: {order:?}");
    assert_eq!(order[0], "virtio_pci_legacy_dev");
    assert!(position(&order, "virtio_ring") < position(&order, "virtio"));
}

#[test]
fn load_order_rejects_cycles_and_unknown_modules() {
    let cycle = parse_modules_dep("a.ko: b.ko\nb.ko: a.ko\n");
    assert!(load_order(&cycle, &names(&["a"])).unwrap_err().contains("cycle"));
    let graph = parse_modules_dep(SAMPLE_MODULES_DEP);
    assert!(load_order(&graph, &names(&["ext4"])).unwrap_err().contains("ext4"));
}

#[test]
fn module_names_drop_directories_suffixes_and_dashes() {
    assert_eq!(module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz").unwrap(), "virtio_rng");
    assert_eq!(module_name("kernel/fs/ext4/ext4.ko").unwrap(), "ext4");
    assert_eq!(module_name("modules.order"), None);
    assert_eq!(uncompressed_path(Path::new("kernel/a/b-c.ko.zst")), "kernel/a/b-c.ko");
}

fn write_module(root: &Path, path: &str, depends: &str) {
    let file = root.join(path);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(file, module_elf(&[&format!("depends={depends}")])).unwrap();
}

fn wanted(name: &'static str, required: bool) -> WantedModule {
    WantedModule { name, required }
}

#[test]
fn tree_without_modules_dep_orders_modules_from_modinfo() {
    let dir = tempfile::tempdir().unwrap();
    write_module(dir.path(), "kernel/virtio/virtio_ring.ko", "");
    write_module(dir.path(), "kernel/virtio/virtio.ko", "virtio_ring");
    write_module(dir.path(), "kernel/block/virtio_blk.ko", "virtio,virtio_ring");
    fs::write(dir.path().join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
    let tree = ModuleTree::open(dir.path(), "6.1.0-test").unwrap();

    let selected = tree
        .select(&[wanted("virtio_blk", true), wanted("ext4", true), wanted("virtio_scsi", false)])
        .unwrap();

    let order: Vec<&str> = selected.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["virtio_ring", "virtio", "virtio_blk"]);
    let dep = modules_dep_text(&selected);
    assert!(
        dep.contains("kernel/block/virtio_blk.ko: kernel/virtio/virtio.ko kernel/virtio/virtio_ring.ko\n"),
        "{dep}"
    );
    assert!(dep.contains("kernel/virtio/virtio_ring.ko:\n"), "{dep}");
}

#[test]
fn compressed_modules_are_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    write_module(dir.path(), "kernel/virtio/virtio_ring.ko", "");
    let status =
        std::process::Command::new("xz").arg(dir.path().join("kernel/virtio/virtio_ring.ko")).status();
    assert!(status.unwrap().success(), "xz is part of Debian's base system");
    let tree = ModuleTree::open(dir.path(), "6.1.0-test").unwrap();

    let selected = tree.select(&[wanted("virtio_ring", true)]).unwrap();

    assert_eq!(selected[0].1.path, "kernel/virtio/virtio_ring.ko");
    assert_eq!(selected[0].1.contents, module_elf(&["depends="]));
}

#[test]
fn a_required_module_that_is_neither_file_nor_builtin_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tree = ModuleTree::open(dir.path(), "6.1.0-test").unwrap();
    let error = tree.select(&[wanted("virtio_blk", true)]).unwrap_err();
    assert!(matches!(error, BuildError::ModuleMissing { .. }), "{error}");
}
