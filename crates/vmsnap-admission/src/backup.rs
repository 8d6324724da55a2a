//! Admission of vmsnap's backup kinds (`backup.vmsnap.io`): repositories, backups and restores.
//!
//! What the controllers would otherwise find out only when they open a repository or start a
//! backup is refused at the door: where a repository is (exactly one of `local` and `s3`, an
//! absolute path, an `http(s)` endpoint with plain `http` on loopback only, a bucket name S3
//! accepts), what a backup reads (a `VirtualMachine` or a `VirtualMachineSnapshot`), its deletion
//! policy, and what a restore writes (a `VirtualMachine`). A backup's or restore's spec does not
//! change after creation (KubeVirt's rule for snapshots and restores), except a backup's
//! `deletionPolicy`, which is read only when the object is deleted (as a VolumeSnapshotContent's).
//! A repository's location does not change either (its backups' objects were found there), nor
//! its chunk size (a power of two the backup engine accepts, read when the repository is made);
//! its read limit (a quantity of bytes per second, at least `1Mi`) may change.
//!
//! Each message starts with the field it is about, because `kubectl` shows a webhook's messages,
//! not its causes' fields.

use std::net::IpAddr;

use vmsnap_api::backup::{
    VirtualMachineBackupRepository, VirtualMachineRepositoryBackup, VirtualMachineRepositoryRestore,
    deletion_policy, label, parse_chunk_size, parse_read_limit,
};
use vmsnap_api::k8s_openapi::api::core::v1::TypedLocalObjectReference;
use vmsnap_api::kubevirt;

use crate::{BACKUP_WEBHOOK, Cause, Denial, Operation, REPOSITORY_RESTORE_WEBHOOK, REPOSITORY_WEBHOOK};

/// The API group of `VirtualMachineSnapshot`.
const SNAPSHOT_GROUP: &str = "snapshot.kubevirt.io";

/// Collects causes whose field the `Status` message names.
#[derive(Default)]
struct Causes(Vec<Cause>);

impl Causes {
    fn invalid(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(Cause::invalid(field, message.to_string()).naming_field());
    }

    fn required(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(Cause::required(field, format!("Required value: {message}")).naming_field());
    }

    fn forbidden(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(Cause::new("FieldValueForbidden", field, format!("Forbidden: {message}")).naming_field());
    }
}

/// Validates a repository create or update.
pub fn validate_repository(
    op: Operation,
    old: Option<&VirtualMachineBackupRepository>,
    new: &VirtualMachineBackupRepository,
) -> Result<(), Denial> {
    let spec = &new.spec;
    let mut causes = Causes::default();
    match (&spec.local, &spec.s3) {
        (Some(_), Some(_)) => causes.invalid("spec", "local and s3 are mutually exclusive: set exactly one"),
        (None, None) => causes.required("spec.local", "set local (a directory) or s3 (a bucket)"),
        (Some(local), None) => {
            if let Some(path) = local.path.as_deref().filter(|p| !p.is_empty()) {
                path_problems(&mut causes, path);
            }
        }
        (None, Some(s3)) => {
            endpoint_problems(&mut causes, &s3.endpoint);
            bucket_problems(&mut causes, &s3.bucket);
            if let Some(prefix) = s3.prefix.as_deref()
                && prefix.split('/').any(|part| part == "." || part == "..")
            {
                causes.invalid(
                    "spec.s3.prefix",
                    format!("{prefix:?} must not contain \".\" or \"..\" segments"),
                );
            }
            if s3.credentials_secret_ref.name.is_empty() {
                causes.required(
                    "spec.s3.credentialsSecretRef.name",
                    "the Secret with the keys accessKeyId and secretAccessKey",
                );
            }
        }
    }
    if spec.passphrase_secret_ref.name.is_empty() {
        causes.required("spec.passphraseSecretRef.name", "the Secret holding the repository's passphrase");
    }
    if let Some(chunk_size) = spec.chunk_size.as_deref() {
        chunk_size_problems(&mut causes, chunk_size);
    }
    if let Some(read_limit) = spec.read_limit.as_deref()
        && let Err(error) = parse_read_limit(read_limit)
    {
        causes.invalid("spec.readLimit", error);
    }
    if let (Operation::Update, Some(old)) = (op, old) {
        let location = |r: &VirtualMachineBackupRepository| {
            (
                r.spec.local.clone(),
                r.spec.s3.as_ref().map(|s| (s.endpoint.clone(), s.bucket.clone(), s.prefix.clone())),
            )
        };
        if location(old) != location(new) {
            causes.forbidden(
                "spec",
                "the location (local, s3 endpoint, bucket, prefix) cannot change: the backups listed here were found there; add another repository instead",
            );
        }
        if old.spec.chunk_size != new.spec.chunk_size {
            causes.forbidden(
                "spec.chunkSize",
                "the chunk size cannot change: it is chosen when the repository is created, and its backups are cut in it; add another repository instead",
            );
        }
    }
    Denial::check(REPOSITORY_WEBHOOK, causes.0)
}

/// A quantity naming a power of two within the backup engine's chunk sizes.
fn chunk_size_problems(causes: &mut Causes, chunk_size: &str) {
    if let Err(error) = parse_chunk_size(chunk_size) {
        causes.invalid("spec.chunkSize", error);
    }
}

/// An absolute path without `.` or `..` segments.
fn path_problems(causes: &mut Causes, path: &str) {
    if !path.starts_with('/') {
        causes.invalid("spec.local.path", format!("{path:?} must be an absolute path"));
    } else if path.split('/').any(|part| part == "." || part == "..") {
        causes.invalid("spec.local.path", format!("{path:?} must not contain \".\" or \"..\" segments"));
    }
}

/// `http(s)://host[:port][/]`, plain http on loopback hosts only, no credentials in the URL.
fn endpoint_problems(causes: &mut Causes, endpoint: &str) {
    const FIELD: &str = "spec.s3.endpoint";
    let (rest, plain) = match (endpoint.strip_prefix("https://"), endpoint.strip_prefix("http://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => {
            causes.invalid(FIELD, format!("{endpoint:?} must be an http:// or https:// URL"));
            return;
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        causes.invalid(
            FIELD,
            format!("{endpoint:?} must not carry credentials: put them in the credentialsSecretRef Secret"),
        );
        return;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    if host.is_empty() {
        causes.invalid(FIELD, format!("{endpoint:?} has no host"));
        return;
    }
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if plain && !loopback {
        causes.invalid(
            FIELD,
            format!(
                "{endpoint:?} uses plain http, which is accepted on loopback addresses only (credentials and data would cross the network in clear): use https"
            ),
        );
    }
}

/// S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and hyphens, starting and
/// ending with a letter or digit.
fn bucket_problems(causes: &mut Causes, bucket: &str) {
    const FIELD: &str = "spec.s3.bucket";
    if bucket.is_empty() {
        causes.required(FIELD, "the bucket (which must exist)");
        return;
    }
    let chars_ok =
        bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = [bucket.chars().next(), bucket.chars().last()]
        .iter()
        .all(|c| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if !(3..=63).contains(&bucket.len()) || !chars_ok || !ends_ok {
        causes.invalid(
            FIELD,
            format!(
                "{bucket:?} is not a valid bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
            ),
        );
    }
}

/// Validates a backup create or update.
pub fn validate_backup(
    op: Operation,
    old: Option<&VirtualMachineRepositoryBackup>,
    new: &VirtualMachineRepositoryBackup,
) -> Result<(), Denial> {
    let spec = &new.spec;
    let mut causes = Causes::default();
    if spec.repository.is_empty() {
        causes.required("spec.repository", "the VirtualMachineBackupRepository to back up to");
    }
    match &spec.source {
        Some(source) => source_problems(&mut causes, source),
        None => {
            let imported = new.metadata.labels.as_ref().and_then(|l| l.get(label::IMPORTED));
            if op == Operation::Create && imported.map(String::as_str) != Some("true") {
                causes.required(
                    "spec.source",
                    "a VirtualMachine (kubevirt.io) or a VirtualMachineSnapshot (snapshot.kubevirt.io) to back up",
                );
            }
        }
    }
    if let Some(policy) = spec.deletion_policy.as_deref()
        && policy != deletion_policy::DELETE
        && policy != deletion_policy::RETAIN
    {
        causes.invalid(
            "spec.deletionPolicy",
            format!(
                "unsupported value {policy:?}: supported values: \"{}\", \"{}\"",
                deletion_policy::DELETE,
                deletion_policy::RETAIN
            ),
        );
    }
    if let (Operation::Update, Some(old)) = (op, old) {
        let fixed = |b: &VirtualMachineRepositoryBackup| {
            (b.spec.repository.clone(), b.spec.source.clone(), b.spec.force_full)
        };
        if fixed(old) != fixed(new) {
            causes.forbidden(
                "spec",
                "the spec of a backup cannot change after creation (only deletionPolicy can): create another backup",
            );
        }
    }
    Denial::check(BACKUP_WEBHOOK, causes.0)
}

/// A backup reads a VM (`kubevirt.io`) or a snapshot (`snapshot.kubevirt.io`), by name.
fn source_problems(causes: &mut Causes, source: &TypedLocalObjectReference) {
    let group = source.api_group.as_deref().unwrap_or_default();
    match source.kind.as_str() {
        "VirtualMachine" if group != kubevirt::GROUP => causes.invalid(
            "spec.source.apiGroup",
            format!("{group:?}: a VirtualMachine's apiGroup is \"{}\"", kubevirt::GROUP),
        ),
        "VirtualMachineSnapshot" if group != SNAPSHOT_GROUP => causes.invalid(
            "spec.source.apiGroup",
            format!("{group:?}: a VirtualMachineSnapshot's apiGroup is \"{SNAPSHOT_GROUP}\""),
        ),
        "VirtualMachine" | "VirtualMachineSnapshot" => {}
        other => causes.invalid(
            "spec.source.kind",
            format!("unsupported value {other:?}: supported values: \"VirtualMachine\", \"VirtualMachineSnapshot\""),
        ),
    }
    if source.name.is_empty() {
        causes.required("spec.source.name", "the name of the VM or snapshot");
    }
}

/// Validates a restore create or update.
pub fn validate_repository_restore(
    op: Operation,
    old: Option<&VirtualMachineRepositoryRestore>,
    new: &VirtualMachineRepositoryRestore,
) -> Result<(), Denial> {
    let spec = &new.spec;
    let mut causes = Causes::default();
    if spec.backup_name.is_empty() {
        causes.required("spec.backupName", "the VirtualMachineRepositoryBackup to restore");
    }
    let target = &spec.target;
    let group = target.api_group.as_deref().unwrap_or_default();
    if target.kind != "VirtualMachine" {
        causes.invalid(
            "spec.target.kind",
            format!("unsupported value {:?}: supported values: \"VirtualMachine\"", target.kind),
        );
    } else if group != kubevirt::GROUP {
        causes.invalid(
            "spec.target.apiGroup",
            format!("{group:?}: a VirtualMachine's apiGroup is \"{}\"", kubevirt::GROUP),
        );
    }
    if target.name.is_empty() {
        causes.required("spec.target.name", "the VM to restore to (a new name, or the backed-up VM)");
    }
    if let (Operation::Update, Some(old)) = (op, old)
        && old.spec != new.spec
    {
        causes
            .forbidden("spec", "the spec of a restore cannot change after creation: create another restore");
    }
    Denial::check(REPOSITORY_RESTORE_WEBHOOK, causes.0)
}

#[cfg(test)]
mod tests {
    use vmsnap_api::backup::{
        LocalRepository, S3Repository, SecretKeySelector, SecretName, VirtualMachineBackupRepositorySpec,
        VirtualMachineRepositoryBackupSpec, VirtualMachineRepositoryRestoreSpec,
    };

    use super::*;

    fn fields(result: Result<(), Denial>, webhook: &str) -> Vec<(String, String)> {
        match result {
            Ok(()) => Vec::new(),
            Err(denial) => {
                assert_eq!(denial.webhook, webhook);
                denial.causes.iter().map(|c| (c.field.clone(), c.summary())).collect()
            }
        }
    }

    fn passphrase() -> SecretKeySelector {
        SecretKeySelector { name: "main-passphrase".into(), key: None }
    }

    fn local(path: Option<&str>) -> VirtualMachineBackupRepository {
        VirtualMachineBackupRepository::new(
            "main",
            VirtualMachineBackupRepositorySpec {
                local: Some(LocalRepository { path: path.map(Into::into) }),
                s3: None,
                passphrase_secret_ref: passphrase(),
                chunk_size: None,
                read_limit: None,
            },
        )
    }

    fn s3(endpoint: &str, bucket: &str) -> VirtualMachineBackupRepository {
        VirtualMachineBackupRepository::new(
            "off-site",
            VirtualMachineBackupRepositorySpec {
                local: None,
                s3: Some(S3Repository {
                    endpoint: endpoint.into(),
                    bucket: bucket.into(),
                    prefix: Some("team-a/vms".into()),
                    region: None,
                    credentials_secret_ref: SecretName { name: "off-site-s3-credentials".into() },
                }),
                passphrase_secret_ref: passphrase(),
                chunk_size: None,
                read_limit: None,
            },
        )
    }

    fn repo(r: &VirtualMachineBackupRepository) -> Vec<(String, String)> {
        fields(validate_repository(Operation::Create, None, r), REPOSITORY_WEBHOOK)
    }

    #[test]
    fn a_local_directory_or_a_bucket_on_https_or_loopback_http_is_accepted() {
        assert_eq!(repo(&local(None)), vec![]);
        assert_eq!(repo(&local(Some("/srv/backups"))), vec![]);
        assert_eq!(repo(&s3("https://s3.example.com", "vm-backups")), vec![]);
        assert_eq!(repo(&s3("http://127.0.0.1:8333", "vm-backups")), vec![]);
        assert_eq!(repo(&s3("http://localhost:9000/", "a.b-c")), vec![]);
        assert_eq!(repo(&s3("http://[::1]:9000", "abc")), vec![]);
    }

    #[test]
    fn exactly_one_of_local_and_s3_is_required() {
        let mut both = s3("https://s3.example.com", "vm-backups");
        both.spec.local = Some(LocalRepository::default());
        assert_eq!(
            repo(&both),
            vec![("spec".into(), "spec: local and s3 are mutually exclusive: set exactly one".into())]
        );
        let mut neither = local(None);
        neither.spec.local = None;
        neither.spec.passphrase_secret_ref.name = String::new();
        assert_eq!(
            repo(&neither),
            vec![
                (
                    "spec.local".into(),
                    "spec.local: Required value: set local (a directory) or s3 (a bucket)".into()
                ),
                (
                    "spec.passphraseSecretRef.name".into(),
                    "spec.passphraseSecretRef.name: Required value: the Secret holding the repository's passphrase"
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn a_local_path_must_be_absolute_and_plain() {
        assert_eq!(
            repo(&local(Some("backups/main"))),
            vec![(
                "spec.local.path".into(),
                "spec.local.path: \"backups/main\" must be an absolute path".into()
            )]
        );
        let got = repo(&local(Some("/srv/../etc")));
        assert_eq!(got.len(), 1);
        assert!(got[0].1.starts_with("spec.local.path: \"/srv/../etc\" must not contain"), "{got:?}");
    }

    #[test]
    fn an_endpoint_needs_an_http_scheme_and_plain_http_a_loopback_host() {
        let one = |endpoint: &str| {
            let got = repo(&s3(endpoint, "vm-backups"));
            assert_eq!(got.len(), 1, "{endpoint}: {got:?}");
            assert_eq!(got[0].0, "spec.s3.endpoint");
            got[0].1.clone()
        };
        assert_eq!(
            one("s3.example.com"),
            "spec.s3.endpoint: \"s3.example.com\" must be an http:// or https:// URL"
        );
        assert!(one("ftp://127.0.0.1").contains("must be an http:// or https:// URL"));
        assert!(
            one("http://10.0.0.5:8333")
                .contains("uses plain http, which is accepted on loopback addresses only")
        );
        assert!(one("http://127.0.0.1.example.com").contains("plain http"));
        assert!(one("https://key:secret@s3.example.com").contains("must not carry credentials"));
        assert!(one("https://").contains("has no host"));
    }

    #[test]
    fn a_bucket_follows_s3_naming_and_secrets_are_named() {
        for bad in ["ab", "Backups", "vm_backups", "-vm", "vm-", &"a".repeat(64)] {
            let got = repo(&s3("https://s3.example.com", bad));
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert_eq!(got[0].0, "spec.s3.bucket");
            assert!(got[0].1.contains("is not a valid bucket name"), "{got:?}");
        }
        let mut r = s3("https://s3.example.com", "");
        r.spec.s3.as_mut().unwrap().credentials_secret_ref.name = String::new();
        r.spec.s3.as_mut().unwrap().prefix = Some("a/../b".into());
        let got: Vec<String> = repo(&r).into_iter().map(|(f, _)| f).collect();
        assert_eq!(got, vec!["spec.s3.bucket", "spec.s3.prefix", "spec.s3.credentialsSecretRef.name"]);
    }

    #[test]
    fn a_repository_keeps_its_location_but_may_change_its_secrets() {
        let old = s3("https://s3.example.com", "vm-backups");
        let mut new = old.clone();
        new.spec.passphrase_secret_ref.key = Some("new".into());
        new.spec.s3.as_mut().unwrap().region = Some("eu-west-1".into());
        assert!(validate_repository(Operation::Update, Some(&old), &new).is_ok());
        new.spec.s3.as_mut().unwrap().bucket = "other-bucket".into();
        let got = fields(validate_repository(Operation::Update, Some(&old), &new), REPOSITORY_WEBHOOK);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "spec");
        assert!(got[0].1.starts_with("spec: Forbidden: the location"), "{got:?}");
    }

    fn with_chunk_size(chunk_size: &str) -> VirtualMachineBackupRepository {
        let mut r = local(None);
        r.spec.chunk_size = Some(chunk_size.into());
        r
    }

    #[test]
    fn a_chunk_size_is_a_power_of_two_quantity_within_the_engines_bounds() {
        for good in ["64Ki", "512Ki", "4Mi", "64Mi", "1048576"] {
            assert_eq!(repo(&with_chunk_size(good)), vec![], "{good}");
        }
        let allowed = "a power of two from 64Ki to 64Mi (64Ki, 128Ki, 256Ki, ... 64Mi)";
        for (bad, bytes) in [("3Mi", 3145728), ("4M", 4000000), ("32Ki", 32768), ("128Mi", 134217728)] {
            assert_eq!(
                repo(&with_chunk_size(bad)),
                vec![(
                    "spec.chunkSize".into(),
                    format!("spec.chunkSize: \"{bad}\" ({bytes} bytes) is not {allowed}")
                )],
            );
        }
        // apimachinery's own message for text that is not a quantity, then what is allowed.
        assert_eq!(
            repo(&with_chunk_size("4MB")),
            vec![(
                "spec.chunkSize".into(),
                format!(
                    "spec.chunkSize: quantities must match the regular expression \
                     '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', got \"4MB\"; a chunk size is {allowed}"
                )
            )],
        );
        let negative = repo(&with_chunk_size("-4Mi"));
        assert_eq!(negative.len(), 1);
        assert!(negative[0].1.starts_with("spec.chunkSize: \"-4Mi\" is negative"), "{negative:?}");
    }

    #[test]
    fn a_read_limit_is_a_quantity_of_at_least_a_mebibyte_per_second_and_may_change() {
        let with_read_limit = |limit: &str| {
            let mut r = local(None);
            r.spec.read_limit = Some(limit.into());
            r
        };
        for good in ["1Mi", "64Mi", "1Gi", "100M"] {
            assert_eq!(repo(&with_read_limit(good)), vec![], "{good}");
        }
        assert_eq!(
            repo(&with_read_limit("100Ki")),
            vec![(
                "spec.readLimit".into(),
                "spec.readLimit: \"100Ki\" (102400 bytes per second) is too low; a read limit is bytes per second as a quantity, at least 1Mi (the default is 256Mi)".into()
            )],
        );
        let not_a_quantity = repo(&with_read_limit("100MB/s"));
        assert_eq!(not_a_quantity.len(), 1);
        assert!(
            not_a_quantity[0].1.starts_with("spec.readLimit: quantities must match"),
            "{not_a_quantity:?}"
        );
        let old = with_read_limit("64Mi");
        for new in [with_read_limit("32Mi"), local(None)] {
            assert!(validate_repository(Operation::Update, Some(&old), &new).is_ok());
        }
    }

    #[test]
    fn a_repository_keeps_its_chunk_size() {
        let old = with_chunk_size("4Mi");
        let mut new = old.clone();
        new.spec.passphrase_secret_ref.key = Some("new".into());
        assert!(validate_repository(Operation::Update, Some(&old), &new).is_ok());
        for changed in [Some("8Mi"), None] {
            new.spec.chunk_size = changed.map(Into::into);
            let got = fields(validate_repository(Operation::Update, Some(&old), &new), REPOSITORY_WEBHOOK);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].0, "spec.chunkSize");
            assert!(
                got[0].1.starts_with("spec.chunkSize: Forbidden: the chunk size cannot change"),
                "{got:?}"
            );
        }
        // Setting one where there was none is a change too: the repository was made in 512Ki.
        let got = fields(
            validate_repository(Operation::Update, Some(&local(None)), &with_chunk_size("512Ki")),
            REPOSITORY_WEBHOOK,
        );
        assert_eq!(got.len(), 1, "{got:?}");
    }

    fn source(group: Option<&str>, kind: &str, name: &str) -> TypedLocalObjectReference {
        TypedLocalObjectReference { api_group: group.map(Into::into), kind: kind.into(), name: name.into() }
    }

    fn backup(source: Option<TypedLocalObjectReference>) -> VirtualMachineRepositoryBackup {
        VirtualMachineRepositoryBackup::new(
            "db-1",
            VirtualMachineRepositoryBackupSpec { repository: "main".into(), source, ..Default::default() },
        )
    }

    fn create_backup(b: &VirtualMachineRepositoryBackup) -> Vec<(String, String)> {
        fields(validate_backup(Operation::Create, None, b), BACKUP_WEBHOOK)
    }

    #[test]
    fn a_backup_reads_a_vm_or_a_snapshot() {
        assert_eq!(create_backup(&backup(Some(source(Some("kubevirt.io"), "VirtualMachine", "db")))), vec![]);
        assert_eq!(
            create_backup(&backup(Some(source(
                Some("snapshot.kubevirt.io"),
                "VirtualMachineSnapshot",
                "s1"
            )))),
            vec![]
        );
        assert_eq!(
            create_backup(&backup(Some(source(Some("kubevirt.io"), "VirtualMachineInstance", "db")))),
            vec![(
                "spec.source.kind".into(),
                "spec.source.kind: unsupported value \"VirtualMachineInstance\": supported values: \"VirtualMachine\", \"VirtualMachineSnapshot\""
                    .into()
            )]
        );
        assert_eq!(
            create_backup(&backup(Some(source(Some("kubevirt.io"), "VirtualMachineSnapshot", "s1")))),
            vec![(
                "spec.source.apiGroup".into(),
                "spec.source.apiGroup: \"kubevirt.io\": a VirtualMachineSnapshot's apiGroup is \"snapshot.kubevirt.io\""
                    .into()
            )]
        );
        let got = create_backup(&backup(Some(source(None, "VirtualMachine", ""))));
        let got: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(got, vec!["spec.source.apiGroup", "spec.source.name"]);
    }

    #[test]
    fn a_backup_without_a_source_is_one_found_in_a_repository() {
        let mut b = backup(None);
        b.spec.repository = String::new();
        let got: Vec<String> = create_backup(&b).into_iter().map(|(f, _)| f).collect();
        assert_eq!(got, vec!["spec.repository", "spec.source"]);
        let mut imported = backup(None);
        imported.metadata.labels = Some([(label::IMPORTED.to_string(), "true".to_string())].into());
        assert_eq!(create_backup(&imported), vec![]);
    }

    #[test]
    fn a_deletion_policy_is_delete_or_retain() {
        let mut b = backup(Some(source(Some("kubevirt.io"), "VirtualMachine", "db")));
        for ok in ["Delete", "Retain"] {
            b.spec.deletion_policy = Some(ok.into());
            assert_eq!(create_backup(&b), vec![]);
        }
        b.spec.deletion_policy = Some("Orphan".into());
        assert_eq!(
            create_backup(&b),
            vec![(
                "spec.deletionPolicy".into(),
                "spec.deletionPolicy: unsupported value \"Orphan\": supported values: \"Delete\", \"Retain\""
                    .into()
            )]
        );
    }

    #[test]
    fn a_backup_spec_is_immutable_but_its_deletion_policy() {
        let old = backup(Some(source(Some("kubevirt.io"), "VirtualMachine", "db")));
        let mut new = old.clone();
        new.spec.deletion_policy = Some("Retain".into());
        assert!(validate_backup(Operation::Update, Some(&old), &new).is_ok());
        new.spec.force_full = Some(true);
        assert_eq!(
            fields(validate_backup(Operation::Update, Some(&old), &new), BACKUP_WEBHOOK),
            vec![(
                "spec".into(),
                "spec: Forbidden: the spec of a backup cannot change after creation (only deletionPolicy can): create another backup"
                    .into()
            )]
        );
        // An imported backup (no source) stays valid on update, as its controller writes status.
        let imported = backup(None);
        assert!(validate_backup(Operation::Update, Some(&imported), &imported).is_ok());
    }

    fn restore(kind: &str, group: Option<&str>) -> VirtualMachineRepositoryRestore {
        VirtualMachineRepositoryRestore::new(
            "r1",
            VirtualMachineRepositoryRestoreSpec {
                backup_name: "db-1".into(),
                target: source(group, kind, "db-copy"),
            },
        )
    }

    #[test]
    fn a_restore_targets_a_virtual_machine_and_does_not_change() {
        let ok = restore("VirtualMachine", Some("kubevirt.io"));
        let check =
            |op, old: Option<&VirtualMachineRepositoryRestore>, new: &VirtualMachineRepositoryRestore| {
                fields(validate_repository_restore(op, old, new), REPOSITORY_RESTORE_WEBHOOK)
            };
        assert_eq!(check(Operation::Create, None, &ok), vec![]);
        assert_eq!(
            check(Operation::Create, None, &restore("VirtualMachineSnapshot", Some("snapshot.kubevirt.io"))),
            vec![(
                "spec.target.kind".into(),
                "spec.target.kind: unsupported value \"VirtualMachineSnapshot\": supported values: \"VirtualMachine\""
                    .into()
            )]
        );
        assert_eq!(
            check(Operation::Create, None, &restore("VirtualMachine", None))[0].0,
            "spec.target.apiGroup"
        );
        let mut empty = ok.clone();
        empty.spec.backup_name = String::new();
        empty.spec.target.name = String::new();
        let got: Vec<String> = check(Operation::Create, None, &empty).into_iter().map(|(f, _)| f).collect();
        assert_eq!(got, vec!["spec.backupName", "spec.target.name"]);
        let mut moved = ok.clone();
        moved.spec.target.name = "elsewhere".into();
        assert_eq!(
            check(Operation::Update, Some(&ok), &moved),
            vec![(
                "spec".into(),
                "spec: Forbidden: the spec of a restore cannot change after creation: create another restore"
                    .into()
            )]
        );
        assert_eq!(check(Operation::Update, Some(&ok), &ok), vec![]);
    }
}
