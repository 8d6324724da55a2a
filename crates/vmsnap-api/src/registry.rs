//! The resource registry: every kind the embedded API server serves, with its names, scope, printer
//! columns and OpenAPI schema. The API server, the OpenAPI documents, discovery, tables and the
//! generated CRDs all read from here, so a kind is described once.

use std::sync::LazyLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::builtin_columns;
use crate::{backup, cdi, kubevirt, schedule, snapshot, volumesnapshot};

/// Whether a kind lives in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Namespaced: `/namespaces/{ns}/{plural}/{name}`.
    Namespaced,
    /// Cluster-scoped: `/{plural}/{name}`.
    Cluster,
}

/// How a printer column gets its cell from an object.
#[derive(Clone, Debug)]
pub enum CellSource {
    /// A simple JSONPath such as `.status.phase` or `.status.conditions[?(@.type=='Ready')].status`.
    JsonPath(String),
    /// Code, for built-in kinds whose columns the real API server computes.
    Computed(fn(&Value) -> Value),
}

/// A column of `kubectl get`.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    /// Header, e.g. `Phase`.
    pub name: String,
    /// `string`, `boolean`, `integer`, `number` or `date` (rendered as an age).
    pub type_: String,
    /// Optional format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 = always shown; 1 = only with `-o wide`.
    pub priority: i32,
    /// Where the cell comes from.
    pub source: CellSource,
}

/// One kind served by the API server.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Served versions; the first is the storage version.
    pub versions: Vec<&'static str>,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Scope.
    pub scope: Scope,
    /// Short names (`vmsnapshot`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Printer columns after `Name`.
    pub columns: Vec<PrinterColumn>,
    /// Has a `/status` subresource with status-only semantics.
    pub has_status: bool,
    /// A built-in kind (strategic merge patch is accepted); custom resources answer 415 to it.
    pub builtin: bool,
    /// OpenAPI v3 schema of the whole object.
    pub schema: Value,
    /// The CRD, for custom resources.
    pub crd: Option<CustomResourceDefinition>,
}

impl ResourceType {
    /// `plural.group` (or `plural` for the core group), as in error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// `group/version` (or `version` for the core group).
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_owned() } else { format!("{}/{version}", self.group) }
    }

    /// The storage version.
    pub fn storage_version(&self) -> &'static str {
        self.versions[0]
    }

    /// Whether the kind is namespaced.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }
}

/// All kinds, built once.
pub struct Registry {
    types: Vec<ResourceType>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::build);

/// The registry of every served kind.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

impl Registry {
    /// Every kind.
    pub fn all(&self) -> &[ResourceType] {
        &self.types
    }

    /// The kind served at `group/version/plural`.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.group == group && t.plural == plural && t.versions.contains(&version))
    }

    /// The kind for an `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        let (group, version) = split_api_version(api_version);
        self.types.iter().find(|t| t.group == group && t.kind == kind && t.versions.contains(&version))
    }

    /// Every group with its versions, in a stable order.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    for v in &t.versions {
                        if !versions.contains(v) {
                            versions.push(v);
                        }
                    }
                }
                None => out.push((t.group, t.versions.clone())),
            }
        }
        out
    }

    fn build() -> Registry {
        let mut types = vec![
            custom::<kubevirt::VirtualMachine>(&[]),
            custom::<kubevirt::VirtualMachineInstance>(&[]),
            custom::<cdi::DataVolume>(&[]),
            custom::<cdi::StorageProfile>(&[]),
            custom::<volumesnapshot::VolumeSnapshot>(&[]),
            custom::<volumesnapshot::VolumeSnapshotClass>(&[]),
            custom::<volumesnapshot::VolumeSnapshotContent>(&[]),
            custom::<snapshot::VirtualMachineSnapshot>(&["v1alpha1"]),
            custom::<snapshot::VirtualMachineSnapshotContent>(&["v1alpha1"]),
            custom::<snapshot::VirtualMachineRestore>(&["v1alpha1"]),
            custom::<schedule::VirtualMachineSnapshotSchedule>(&[]),
            custom::<backup::VirtualMachineBackupRepository>(&[]),
            custom::<backup::VirtualMachineRepositoryBackup>(&[]),
            custom::<backup::VirtualMachineRepositoryRestore>(&[]),
        ];
        types.extend(builtin_columns::builtin_types());
        Registry { types }
    }
}

/// Splits `group/version` (or a bare core `version`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

fn custom<K: CustomResourceExt + kube_core::Resource<DynamicType = ()>>(
    extra_versions: &[&'static str],
) -> ResourceType {
    let mut crd = K::crd();
    let version = crd.spec.versions[0].clone();
    for extra in extra_versions {
        let mut v = version.clone();
        v.name = (*extra).to_owned();
        v.storage = false;
        crd.spec.versions.push(v);
    }
    let names = &crd.spec.names;
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(|s| serde_json::to_value(s).expect("schemas serialize"))
        .unwrap_or_else(|| json!({"type": "object"}));
    let columns = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: c.name.clone(),
            type_: c.type_.clone(),
            format: c.format.clone().unwrap_or_default(),
            description: c.description.clone().unwrap_or_default(),
            priority: c.priority.unwrap_or(0),
            source: CellSource::JsonPath(c.json_path.clone()),
        })
        .collect::<Vec<_>>();
    let versions = std::iter::once(leak(K::version(&()))).chain(extra_versions.iter().copied()).collect();
    ResourceType {
        group: leak(K::group(&())),
        versions,
        kind: names.kind.clone(),
        plural: names.plural.clone(),
        singular: names.singular.clone().unwrap_or_else(|| names.kind.to_lowercase()),
        scope: if crd.spec.scope == "Namespaced" { Scope::Namespaced } else { Scope::Cluster },
        short_names: names.short_names.clone().unwrap_or_default(),
        categories: names.categories.clone().unwrap_or_default(),
        columns: if columns.is_empty() { vec![age_column()] } else { columns },
        has_status: version.subresources.as_ref().is_some_and(|s| s.status.is_some()),
        builtin: false,
        schema,
        crd: Some(crd),
    }
}

fn leak(s: std::borrow::Cow<'_, str>) -> &'static str {
    // The registry is built once per process; these few strings live as long as it.
    Box::leak(s.into_owned().into_boxed_str())
}

/// The default `Age` column.
pub fn age_column() -> PrinterColumn {
    PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        source: CellSource::JsonPath(".metadata.creationTimestamp".into()),
    }
}

/// The OpenAPI v3 schema of a built-in type, with every subschema inlined.
pub fn builtin_schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = serde_json::to_value(schema).expect("schemas serialize");
    if let Some(obj) = value.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    value
}
