//! `VolumeDriver::snapshot_image`: snapshots read outside QEMU, checked
//! against QEMU's own tools. Data is written with `qemu-io`; every
//! reassembled image is compared with `qemu-img compare` against the
//! snapshot's chain, and every extent list against the writes made.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{DiskModel, Kind, MIB, Store, sid, vid};
use vmsnap_storage::{
    ChangedExtents, ExtentSource, IncrementalImpossible, MappedExtent, SnapshotImage, StorageError,
    StorageOptions,
};
use vmsnap_testing::images::{assert_bytes, read_image};

const CLUSTER: u64 = 64 << 10;
const SIZE: u64 = 64 * MIB;

/// A small xorshift generator: the writes differ from run to run, and a
/// failure prints the seed (`VMSNAP_TEST_SEED` replays it).
struct Random(u64);

impl Random {
    fn new() -> Self {
        let seed = std::env::var("VMSNAP_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("VMSNAP_TEST_SEED={seed}");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The byte ranges written, as `(offset, length)`.
type Writes = Vec<(u64, u64)>;

/// Writes `count` random, sector-aligned ranges of nonzero patterns into the
/// volume, anywhere in its first `SIZE` bytes.
async fn write_random(store: &Store, model: &mut DiskModel, random: &mut Random, count: usize) -> Writes {
    let mut writes = Vec::new();
    for _ in 0..count {
        let length = (1 + random.below(384)) * 512;
        let offset = random.below((SIZE - length) / 512) * 512;
        let pattern = 1 + random.below(255) as u8;
        store.write("disk", model, offset, length, pattern).await;
        writes.push((offset, length));
    }
    writes
}

/// The 64 KiB clusters that `ranges` touch.
fn clusters(ranges: impl IntoIterator<Item = (u64, u64)>) -> BTreeSet<u64> {
    ranges
        .into_iter()
        .flat_map(|(offset, length)| offset / CLUSTER..(offset + length).div_ceil(CLUSTER))
        .collect()
}

fn extent_ranges(extents: &[MappedExtent]) -> impl Iterator<Item = (u64, u64)> + '_ {
    extents.iter().map(|extent| (extent.offset, extent.length))
}

/// Extents are sorted, disjoint, positive, within the disk.
fn assert_well_formed(extents: &[MappedExtent], size: u64) {
    for pair in extents.windows(2) {
        assert!(pair[0].end() <= pair[1].offset, "overlapping or unsorted extents {pair:?}");
    }
    assert!(extents.iter().all(|extent| extent.length > 0 && extent.end() <= size), "{extents:?}");
}

/// The whole image through `read_at`, from four threads at once, in reads of
/// an odd size so that they straddle extent boundaries.
fn reassemble(image: &SnapshotImage) -> Vec<u8> {
    let size = image.size_bytes() as usize;
    let mut bytes = vec![0xee_u8; size];
    let quarter = size.div_ceil(4);
    std::thread::scope(|scope| {
        for (index, part) in bytes.chunks_mut(quarter).enumerate() {
            scope.spawn(move || {
                let start = (index * quarter) as u64;
                for (offset, chunk) in (0..).step_by(300_007).zip(part.chunks_mut(300_007)) {
                    image.read_at(start + offset, chunk).unwrap();
                }
            });
        }
    });
    bytes
}

/// `qemu-img compare` of `raw` with an image (and its backing chain): the oracle.
fn assert_same_as(qemu_img: &Path, raw: &[u8], image: &Path, format: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), raw).unwrap();
    let output = Command::new(qemu_img)
        .args(["compare", "-U", "-f", "raw", "-F", format])
        .arg(file.path())
        .arg(image)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "qemu-img compare with {} says: {}{}",
        image.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Reads the image whole and checks it against QEMU's view of its top file and against the model.
fn assert_reads_as(store: &Store, image: &SnapshotImage, model: &DiskModel) {
    assert_eq!(image.size_bytes(), model.size);
    let bytes = reassemble(image);
    let top = &image.chain()[0];
    assert_same_as(&store.options.qemu_img, &bytes, top.path(), top.format().as_str());
    assert_bytes(&format!("snapshot {}", image.snapshot().id), &bytes, &model.bytes());
}

/// Opens snapshot `name` and maps its chain.
async fn open(store: &Store, name: &str) -> SnapshotImage {
    let image = open_unmapped(store, name).await;
    image.allocated().await.unwrap();
    image
}

/// Opens snapshot `name`: its files only.
async fn open_unmapped(store: &Store, name: &str) -> SnapshotImage {
    store.driver.snapshot_image(&sid(name)).await.unwrap().expect("the snapshot exists")
}

async fn snapshot(store: &Store, name: &str) {
    store.driver.snapshot_volumes(&[(vid("disk"), sid(name))], None).await.unwrap();
}

fn changes(answer: Result<ChangedExtents, StorageError>) -> Vec<MappedExtent> {
    match answer.expect("the question is answered") {
        ChangedExtents::Since { extents } => extents,
        ChangedExtents::Impossible(reason) => panic!("an incremental should be possible: {reason}"),
    }
}

fn impossible(answer: Result<ChangedExtents, StorageError>) -> IncrementalImpossible {
    match answer.expect("the question is answered") {
        ChangedExtents::Impossible(reason) => reason,
        ChangedExtents::Since { extents } => panic!("no incremental should be possible, got {extents:?}"),
    }
}

/// Zeros `CLUSTER` bytes at `offset` of the volume with `qemu-io write -z` (a zero cluster).
async fn write_zeros(store: &Store, model: &mut DiskModel, offset: u64) {
    let info = store.info("disk").await;
    let output = Command::new(&store.qemu_io)
        .args(["-f", info.format.as_str(), "-c", &format!("write -z {offset} {CLUSTER}")])
        .arg(&info.path)
        .output()
        .unwrap();
    assert!(output.status.success(), "qemu-io write -z: {}", String::from_utf8_lossy(&output.stderr));
    model.push_write(offset, CLUSTER, 0);
}

#[tokio::test]
async fn layered_snapshots_read_bit_exact_and_diff_to_exactly_the_clusters_written_between() {
    let Some(store) = Store::new(Kind::Layered).await else { return };
    let mut random = Random::new();
    let (_, mut model) = store.create("disk", SIZE).await;
    let first_writes = write_random(&store, &mut model, &mut random, 24).await;
    let first_model = model.clone();
    snapshot(&store, "first").await;
    let mut second_writes = write_random(&store, &mut model, &mut random, 12).await;
    // Zeros over data of the first snapshot: a change that reads as zeros.
    let (zeroed, _) = first_writes[0];
    let zeroed = zeroed / CLUSTER * CLUSTER;
    write_zeros(&store, &mut model, zeroed).await;
    second_writes.push((zeroed, CLUSTER));
    let second_model = model.clone();
    snapshot(&store, "second").await;
    // Written after the second snapshot: in neither image.
    write_random(&store, &mut model, &mut random, 4).await;

    let (first, second) = (open(&store, "first").await, open(&store, "second").await);
    assert_eq!((first.chain().len(), second.chain().len()), (1, 2));
    assert_reads_as(&store, &first, &first_model);
    assert_reads_as(&store, &second, &second_model);

    // The first snapshot allocates exactly the clusters written before it.
    assert_well_formed(first.allocated().await.unwrap(), SIZE);
    assert_eq!(
        clusters(extent_ranges(first.allocated().await.unwrap())),
        clusters(first_writes.iter().copied())
    );
    assert!(
        first
            .allocated()
            .await
            .unwrap()
            .iter()
            .all(|e| matches!(e.source, ExtentSource::Data { depth: 0, .. }))
    );

    // Changes since the first: exactly the clusters written between, the
    // zeroed cluster as a zero extent of the second's own layer.
    let changed = changes(second.changed_since(&sid("first")).await);
    assert_well_formed(&changed, SIZE);
    assert_eq!(clusters(extent_ranges(&changed)), clusters(second_writes.iter().copied()));
    assert!(changed.iter().all(|extent| extent.source.depth() == 0), "{changed:?}");
    let zero = MappedExtent { offset: zeroed, length: CLUSTER, source: ExtentSource::Zero { depth: 0 } };
    let overwritten = second_writes[..second_writes.len() - 1]
        .iter()
        .any(|&(offset, length)| offset < zeroed + CLUSTER && zeroed < offset + length);
    assert!(overwritten || changed.contains(&zero), "no zero extent at {zeroed} in {changed:?}");

    // The first snapshot's content plus the changed extents is the second.
    let mut rebuilt = reassemble(&first);
    for extent in &changed {
        let range = extent.offset as usize..extent.end() as usize;
        second.read_at(extent.offset, &mut rebuilt[range]).unwrap();
    }
    assert_same_as(&store.options.qemu_img, &rebuilt, second.chain()[0].path(), "qcow2");

    // The same through the first's change point, nothing since itself, and typed refusals.
    let point = first.change_point().expect("layered snapshots have change points");
    assert_eq!(changes(second.changed_since_point(&point).await), changed);
    assert!(changes(second.changed_since(&sid("second")).await).is_empty());
    let newer = impossible(first.changed_since(&sid("second")).await);
    assert_eq!(newer, IncrementalImpossible::BaseIsNewer { base: sid("second"), snapshot: sid("first") });
    assert_eq!(newer.reason(), "BaseIsNewer");
    let missing = impossible(second.changed_since(&sid("never-taken")).await);
    assert_eq!(missing, IncrementalImpossible::BaseMissing { base: sid("never-taken") });
    assert!(first.read_at(SIZE - 10, &mut [0; 11]).is_err(), "a read past the end must fail");
}

#[tokio::test]
async fn a_restored_volume_diffs_against_its_origin_and_an_unrelated_volume_does_not() {
    let Some(store) = Store::new(Kind::Layered).await else { return };
    let mut random = Random::new();
    let (_, mut model) = store.create("disk", SIZE).await;
    write_random(&store, &mut model, &mut random, 8).await;
    snapshot(&store, "origin").await;
    store.driver.restore_volume(&sid("origin"), &vid("restored"), 0).await.unwrap();
    let mut restored_model = model.clone();
    store.write("restored", &mut restored_model, 3 * MIB, 4096, 0x5a).await;
    store.driver.snapshot_volumes(&[(vid("restored"), sid("of-restored"))], None).await.unwrap();
    store.create("other", SIZE).await;
    store.driver.snapshot_volumes(&[(vid("other"), sid("of-other"))], None).await.unwrap();

    let image = open(&store, "of-restored").await;
    assert_reads_as(&store, &image, &restored_model);
    let changed = changes(image.changed_since(&sid("origin")).await);
    assert_eq!(clusters(extent_ranges(&changed)), clusters([(3 * MIB, 4096)]));
    assert_eq!(
        impossible(image.changed_since(&sid("of-other")).await),
        IncrementalImpossible::DifferentVolume {
            base: sid("of-other"),
            base_volume: vid("other"),
            volume: vid("restored"),
        }
    );
}

#[tokio::test]
async fn compaction_keeps_the_bottom_layer_diffable_and_makes_later_points_impossible() {
    let options = StorageOptions { max_chain_depth: 2, ..StorageOptions::default() };
    let Some(store) = Store::with_options(Kind::Layered, options).await else { return };
    let mut random = Random::new();
    let (_, mut model) = store.create("disk", SIZE).await;
    write_random(&store, &mut model, &mut random, 6).await;
    snapshot(&store, "s1").await;
    let s1_model = model.clone();
    for name in ["s2", "s3"] {
        write_random(&store, &mut model, &mut random, 6).await;
        snapshot(&store, name).await;
    }
    let s2_point = open(&store, "s2").await.change_point().unwrap();
    write_random(&store, &mut model, &mut random, 6).await;
    let report = store.driver.compact(None).await.unwrap();
    assert_eq!(report.compacted, vec![vid("disk")], "{report:?}");
    snapshot(&store, "s4").await;

    let image = open(&store, "s4").await;
    assert_eq!(image.chain().len(), 2, "the compacted chain: the rebased layer over the bottom one");
    assert_reads_as(&store, &image, &model);
    // s1 sealed the bottom layer, which compaction keeps: still diffable.
    let mut rebuilt = s1_model.resized(SIZE).bytes();
    for extent in changes(image.changed_since(&sid("s1")).await) {
        let range = extent.offset as usize..extent.end() as usize;
        image.read_at(extent.offset, &mut rebuilt[range]).unwrap();
    }
    assert_bytes("s1 plus the changes since", &rebuilt, &model.bytes());
    // s2's layer was merged into the rebased one: no incremental, and why.
    let not_in_chain = impossible(image.changed_since(&sid("s2")).await);
    assert_eq!(not_in_chain, IncrementalImpossible::BaseNotInChain { base: sid("s2"), snapshot: sid("s4") });
    assert_eq!(not_in_chain.reason(), "BaseNotInChain");
    assert!(matches!(
        impossible(image.changed_since_point(&s2_point).await),
        IncrementalImpossible::PointNotInChain { .. }
    ));
}

#[tokio::test]
async fn the_copy_driver_reads_its_files_and_says_it_cannot_diff() {
    let Some(store) = Store::new(Kind::Copy).await else { return };
    let mut random = Random::new();
    let (_, mut model) = store.create("disk", SIZE).await;
    let writes = write_random(&store, &mut model, &mut random, 16).await;
    snapshot(&store, "first").await;
    write_random(&store, &mut model, &mut random, 4).await;
    snapshot(&store, "second").await;

    let (first, second) = (open(&store, "first").await, open(&store, "second").await);
    assert_eq!(first.chain().len(), 1);
    assert_reads_as(&store, &second, &model);
    assert_well_formed(first.allocated().await.unwrap(), SIZE);
    // A raw file's data extents come from SEEK_DATA: they cover every write
    // (and, where the copy wrote holes out, more).
    let allocated = clusters(extent_ranges(first.allocated().await.unwrap()));
    assert!(clusters(writes.iter().copied()).is_subset(&allocated));
    let expected = IncrementalImpossible::StandaloneSnapshots { driver: "copy" };
    assert_eq!(impossible(second.changed_since(&sid("first")).await), expected);
    assert_eq!(second.change_point(), None);
    assert_eq!(expected.reason(), "StandaloneSnapshots");
}

/// The image is opened, its snapshots and volume deleted, and only then is it
/// mapped and read: `qemu-img` maps the files it holds open, not their paths.
#[tokio::test]
async fn a_snapshot_deleted_while_its_image_is_open_still_maps_and_reads_correctly() {
    for kind in [Kind::Layered, Kind::Copy] {
        let Some(store) = Store::new(kind).await else { return };
        let mut random = Random::new();
        let (_, mut model) = store.create("disk", SIZE).await;
        write_random(&store, &mut model, &mut random, 16).await;
        snapshot(&store, "first").await;
        write_random(&store, &mut model, &mut random, 8).await;
        snapshot(&store, "snap").await;
        let image = open_unmapped(&store, "snap").await;
        let top = image.chain()[0].path().to_owned();
        let oracle = read_image(&store.options.qemu_img, &top, image.chain()[0].format().as_str());
        let error = image.read_at(0, &mut [0; 512]).unwrap_err();
        assert!(error.to_string().contains("before its chain was mapped"), "{error}");

        for name in ["first", "snap"] {
            store.driver.delete_snapshot(&sid(name)).await.unwrap();
        }
        store.driver.delete_volume(&vid("disk")).await.unwrap();
        assert!(store.driver.snapshot_image(&sid("snap")).await.unwrap().is_none());
        for file in image.chain() {
            assert!(!file.path().exists(), "{}: {} was not removed", kind.name(), file.path().display());
        }
        store.assert_no_leaks().await;
        assert!(!image.is_mapped());
        assert_well_formed(image.allocated().await.unwrap(), SIZE);
        assert_bytes(&format!("{} image after deletion", kind.name()), &reassemble(&image), &oracle);
        assert_bytes("the model", &oracle, &model.bytes());
    }
}

/// A question about changes maps the layers above the base alone: with
/// nothing written since, the whole chain is never mapped (its cost grows with
/// the disk's data); with changes, it is, so they can be read.
#[tokio::test]
async fn nothing_changed_is_known_from_the_layers_above_the_base_alone() {
    let Some(store) = Store::new(Kind::Layered).await else { return };
    let mut random = Random::new();
    let (_, mut model) = store.create("disk", SIZE).await;
    write_random(&store, &mut model, &mut random, 16).await;
    snapshot(&store, "base").await;
    snapshot(&store, "same").await;
    let written = write_random(&store, &mut model, &mut random, 4).await;
    snapshot(&store, "changed").await;

    let same = open_unmapped(&store, "same").await;
    assert!(changes(same.changed_since(&sid("base")).await).is_empty());
    assert!(!same.is_mapped(), "nothing changed: the whole chain was mapped all the same");

    let changed = open_unmapped(&store, "changed").await;
    let extents = changes(changed.changed_since(&sid("same")).await);
    assert_eq!(clusters(extent_ranges(&extents)), clusters(written.iter().copied()));
    assert!(changed.is_mapped(), "changes to read, but the chain is not mapped");
    let since_base = changes(changed.changed_since(&sid("base")).await);
    assert_eq!(since_base, extents, "the empty layer between adds nothing");
    assert_reads_as(&store, &changed, &model);
}

/// The data clusters of a map: virtual cluster -> (file depth, host offset).
type DataClusters = std::collections::BTreeMap<u64, (usize, u64)>;

fn data_clusters(extents: &[MappedExtent]) -> DataClusters {
    let mut clusters = DataClusters::new();
    for extent in extents {
        let ExtentSource::Data { depth, host_offset } = extent.source else { panic!("not data: {extent:?}") };
        for offset in (extent.offset..extent.end()).step_by(CLUSTER as usize) {
            clusters.insert(offset, (depth, host_offset + (offset - extent.offset)));
        }
    }
    clusters
}

/// What `qemu-img map` itself says of the data clusters of `top` and its backing chain.
fn data_clusters_by_qemu_img(qemu_img: &Path, top: &Path) -> DataClusters {
    let output = Command::new(qemu_img).args(["map", "--output=json", "-U"]).arg(top).output().unwrap();
    assert!(output.status.success(), "qemu-img map: {}", String::from_utf8_lossy(&output.stderr));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut clusters = DataClusters::new();
    for entry in entries.iter().filter(|e| e["present"] == true && e["data"] == true && e["zero"] == false) {
        let (start, length) = (entry["start"].as_u64().unwrap(), entry["length"].as_u64().unwrap());
        let (depth, host) = (entry["depth"].as_u64().unwrap() as usize, entry["offset"].as_u64().unwrap());
        for offset in (start..start + length).step_by(CLUSTER as usize) {
            clusters.insert(offset, (depth, host + (offset - start)));
        }
    }
    clusters
}

/// A later snapshot's whole map is its new layers' map laid over the map the store kept of the
/// chain below them: the same map `qemu-img` makes of the whole chain, and the same bytes. A
/// file of the chain touched since is a miss, and the chain is mapped whole again.
#[tokio::test]
async fn a_later_snapshot_maps_only_its_new_layers_over_the_kept_map_of_the_chain_below() {
    let Some(store) = Store::new(Kind::Layered).await else { return };
    let mut random = Random::new();
    let (_, mut model) = store.create("disk", SIZE).await;
    let first_writes = write_random(&store, &mut model, &mut random, 24).await;
    snapshot(&store, "s1").await;
    write_random(&store, &mut model, &mut random, 12).await;
    snapshot(&store, "s2").await;
    let s2 = open(&store, "s2").await;
    assert_eq!(s2.files_mapped(), Some(2), "nothing was kept: the whole chain is mapped");

    // Later: the disk grows, new data, zeros over old data, and two layers above s2's chain.
    store.driver.resize_volume(&vid("disk"), 2 * SIZE).await.unwrap();
    model = model.resized(2 * SIZE);
    let mut later = write_random(&store, &mut model, &mut random, 8).await;
    snapshot(&store, "s3").await;
    store.write("disk", &mut model, SIZE + 3 * CLUSTER, 2 * CLUSTER, 0x5a).await;
    later.push((SIZE + 3 * CLUSTER, 2 * CLUSTER));
    let zeroed = first_writes[0].0 / CLUSTER * CLUSTER;
    write_zeros(&store, &mut model, zeroed).await;
    later.push((zeroed, CLUSTER));
    snapshot(&store, "s4").await;

    let s4 = open_unmapped(&store, "s4").await;
    assert_eq!(s4.chain().len(), 4);
    let changed = changes(s4.changed_since(&sid("s2")).await);
    assert_eq!(s4.files_mapped(), Some(2), "only the two layers above s2's chain are mapped");
    assert_eq!(clusters(extent_ranges(&changed)), clusters(later.iter().copied()));
    let allocated = s4.allocated().await.unwrap();
    assert_well_formed(allocated, 2 * SIZE);
    let top = s4.chain()[0].path();
    assert_eq!(data_clusters(allocated), data_clusters_by_qemu_img(&store.options.qemu_img, top));
    assert_reads_as(&store, &s4, &model);

    // This very chain again: nothing to map. A file of it touched since: mapped whole.
    let again = open(&store, "s4").await;
    assert_eq!(again.files_mapped(), Some(0));
    assert_eq!(again.allocated().await.unwrap(), allocated);
    let s1_layer = std::fs::File::options().write(true).open(s4.chain()[3].path()).unwrap();
    s1_layer.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    let touched = open(&store, "s4").await;
    assert_eq!(touched.files_mapped(), Some(4), "a touched file must not be trusted to an old map");
    assert_eq!(data_clusters(touched.allocated().await.unwrap()), data_clusters(allocated));
}

/// Bytes of `path` in the page cache, as util-linux's `fincore` counts them.
fn resident_bytes(path: &Path) -> u64 {
    let output = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(output.status.success(), "fincore: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("fincore prints a byte count")
}

/// Writes `path` out and drops it from the page cache.
fn evict(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
}

/// A backup reads a snapshot in aligned chunks, each byte once: those reads go around the page
/// cache, so a backup of many GiB neither pays the kernel's copy nor evicts what the VMs read,
/// and they read the same bytes as QEMU does (odd-sized reads, as the other tests make, are
/// buffered).
#[tokio::test]
async fn aligned_reads_of_a_snapshot_leave_the_page_cache_as_it_was_and_read_the_same_bytes() {
    const CHUNK: usize = 512 << 10;
    let Some(store) = Store::new(Kind::Layered).await else { return };
    let mut random = Random::new();
    let (_, mut model) = store.create("disk", SIZE).await;
    write_random(&store, &mut model, &mut random, 24).await;
    snapshot(&store, "first").await;
    write_random(&store, &mut model, &mut random, 12).await;
    write_zeros(&store, &mut model, 3 * CLUSTER).await;
    snapshot(&store, "second").await;
    let image = open(&store, "second").await;
    assert_eq!(image.chain().len(), 2);
    let data: u64 = image.allocated().await.unwrap().iter().map(|e| e.length).sum();
    assert!(data >= 4 * MIB, "the chain holds data to read: {data} bytes");
    for file in image.chain() {
        evict(file.path());
        assert_eq!(resident_bytes(file.path()), 0, "{} is out of the page cache", file.path().display());
    }

    let mut bytes = vec![0xee_u8; SIZE as usize];
    for (index, chunk) in bytes.chunks_mut(CHUNK).enumerate() {
        image.read_at((index * CHUNK) as u64, chunk).unwrap();
    }
    for file in image.chain() {
        // qcow2 metadata read while mapping may come back in; the data read must not.
        let resident = resident_bytes(file.path());
        assert!(
            resident < MIB,
            "{} has {resident} bytes in the page cache after the reads",
            file.path().display()
        );
    }
    let top = &image.chain()[0];
    assert_same_as(&store.options.qemu_img, &bytes, top.path(), "qcow2");
    assert_bytes("the model", &bytes, &model.bytes());
}
