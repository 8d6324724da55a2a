//! create, update, patch and delete: validation, server-set metadata, generation, finalizers and
//! deletionTimestamp, no-op suppression, and optimistic concurrency with retries.

use serde_json::{Value, json};
use vmsnap_admission::Operation;
use vmsnap_api::registry::{ResourceType, registry};
use vmsnap_store::{Mutation, ObjectKey};

use super::Core;
use super::objects::{
    finalizers, is_deleting, is_releasable, key, meta_mut, meta_str, same_object, spec_changed, to_storage,
    to_version,
};
use super::webhooks::{Operation as WebhookOperation, Review};
use super::{strategy, typed};
use crate::error::ApiError;
use crate::pure::names::{self, NameRule};
use crate::pure::patch::{self, PatchError, PatchType};
use crate::pure::validation::{self, Cause};
use crate::pure::{fieldset, metadata, time};

/// `fieldValidation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields are an error (kubectl's default).
    Strict,
    /// Unknown fields are dropped with a warning (the API server's default).
    #[default]
    Warn,
    /// Unknown fields are dropped silently.
    Ignore,
}

impl FieldValidation {
    /// From the query parameter.
    pub fn parse(text: Option<&str>) -> Result<FieldValidation, ApiError> {
        match text {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation {other:?} is invalid: must be one of Ignore, Warn or Strict"
            ))),
        }
    }
}

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub validation: FieldValidation,
    /// `dryRun=All`: validate, do not store.
    pub dry_run: bool,
    /// `force` (server-side apply).
    pub force: bool,
    /// Fields the request body set twice (`spec.x`), found by the HTTP layer in the raw JSON:
    /// refused under `Strict`, warned about under `Warn`, as kube-apiserver's strict decoding does.
    pub duplicate_fields: Vec<String>,
}

/// The result of a write.
#[derive(Clone, Debug)]
pub struct WriteResult {
    /// The object as the client's version sees it.
    pub object: Value,
    /// Warnings for the `Warning` header.
    pub warnings: Vec<String>,
    /// Whether the object was created (201).
    pub created: bool,
}

/// `propagationPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Delete now; dependents are collected in the background.
    Background,
    /// Delete dependents first.
    Foreground,
    /// Keep dependents, removing their owner references.
    Orphan,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// Propagation policy.
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

enum CasError {
    Exists,
    Changed,
}

const MAX_RETRIES: usize = 64;

fn metadata_schema() -> &'static Value {
    static SCHEMA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        registry().by_kind("v1", "Namespace").expect("Namespace is registered").schema["properties"]["metadata"].clone()
    });
    &SCHEMA
}

fn name_of(obj: &Value) -> String {
    meta_str(obj, "name").unwrap_or_default().to_owned()
}

fn resource_version(obj: &Value) -> Option<String> {
    meta_str(obj, "resourceVersion").filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The object an update or a patch writes: its resource, the version the request speaks, its
/// namespace and name, and the subresource (`status`) if the request is on one.
#[derive(Clone, Copy)]
struct UpdateTarget<'a> {
    rt: &'a ResourceType,
    version: &'a str,
    ns: Option<&'a str>,
    name: &'a str,
    subresource: Option<&'a str>,
}

impl Core {
    /// Validates a body against the schema: prunes unknown fields (an error under Strict), applies
    /// defaults, and refuses type, enum and required errors.
    fn validate_body(
        &self,
        rt: &ResourceType,
        version: &str,
        obj: &mut Value,
        opts: &WriteOptions,
    ) -> Result<Vec<String>, ApiError> {
        let name = name_of(obj);
        let report = validation::validate(obj, &rt.schema, metadata_schema());
        let cannot_handle = |detail: String| {
            ApiError::bad_request(format!(
                "{} in version \"{version}\" cannot be handled as a {}: {detail}",
                rt.kind, rt.kind
            ))
        };
        if rt.builtin && !report.bad_quantities.is_empty() {
            return Err(cannot_handle(vmsnap_api::quantity::FORMAT_MESSAGE.to_owned()));
        }
        // Duplicates come from decoding, unknown fields from pruning: in that order, as the
        // strict decoding error lists them.
        let strict_errors: Vec<String> = opts
            .duplicate_fields
            .iter()
            .map(|f| format!("duplicate field \"{f}\""))
            .chain(report.unknown_fields.iter().map(|f| format!("unknown field \"{f}\"")))
            .collect();
        let mut warnings = Vec::new();
        if !strict_errors.is_empty() {
            match opts.validation {
                FieldValidation::Strict => {
                    return Err(cannot_handle(format!(
                        "strict decoding error: {}",
                        strict_errors.join(", ")
                    )));
                }
                FieldValidation::Warn => warnings = strict_errors,
                FieldValidation::Ignore => {}
            }
        }
        let mut causes = report.causes;
        causes.extend(metadata::validate(obj));
        causes.extend(strategy::validate(rt, obj));
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, &causes));
        }
        Ok(warnings)
    }

    /// Checks `kind` and `apiVersion` against the URL. A built-in kind's decoder defaults missing
    /// ones from the URL; a custom resource's requires them, as kube-apiserver's do.
    fn check_type_meta(&self, rt: &ResourceType, version: &str, obj: &mut Value) -> Result<(), ApiError> {
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
        };
        let expected = rt.api_version(version);
        if rt.builtin {
            for (field, default) in [("kind", &rt.kind), ("apiVersion", &expected)] {
                if map.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                    map.insert(field.to_owned(), json!(default));
                }
            }
        }
        match map.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                return Err(ApiError::bad_request(format!(
                    "Object 'Kind' is missing in '{}'",
                    truncate(&obj.to_string())
                )));
            }
            Some(k) if k != rt.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    rt.kind
                )));
            }
            _ => {}
        }
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        if av != expected {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({expected})"
            )));
        }
        Ok(())
    }

    async fn check_namespace(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<(), ApiError> {
        let Some(ns) = ns.filter(|_| rt.namespaced()) else { return Ok(()) };
        let ns_rt = registry().by_kind("v1", "Namespace").expect("Namespace is registered");
        match self.get_stored(ns_rt, None, ns).await? {
            None => Err(ApiError::not_found(ns_rt, ns)),
            Some(n) if is_deleting(&n) => {
                let mut e = ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rt.qualified_plural(),
                ));
                e.details = Some(
                    json!({"causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
                );
                Err(e)
            }
            Some(_) => Ok(()),
        }
    }

    async fn cas(
        &self,
        key: ObjectKey,
        expected: Option<String>,
        mutation: Mutation,
    ) -> Result<Result<Option<Value>, CasError>, ApiError> {
        let configures_webhooks = key.resource == super::webhooks::CONFIGURATIONS;
        let outcome = self
            .store
            .mutate(key, move |current| {
                let current_rv = current.and_then(resource_version);
                match (&expected, current) {
                    (None, Some(_)) => Err(CasError::Exists),
                    (Some(_), None) => Err(CasError::Changed),
                    (Some(want), Some(_)) if current_rv.as_ref() != Some(want) => Err(CasError::Changed),
                    _ => Ok(mutation),
                }
            })
            .await;
        if configures_webhooks {
            self.webhooks.invalidate();
        }
        Ok(outcome?.map(|o| o.object.map(|v| (*v).clone())))
    }

    /// Creates an object. `body` is in the client's `version`.
    pub async fn create(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        self.check_type_meta(rt, version, &mut body)?;
        if resource_version(&body).is_some() {
            // kube-apiserver's storage refuses it (and answers 500): here it is the client's error.
            return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
        }
        {
            let meta = meta_mut(&mut body);
            if rt.namespaced() {
                let given = meta.get("namespace").and_then(Value::as_str).filter(|s| !s.is_empty());
                if let (Some(given), Some(ns)) = (given, ns)
                    && given != ns
                {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                meta.insert("namespace".into(), json!(ns.unwrap_or("default")));
            } else {
                meta.remove("namespace");
            }
        }
        let generate = meta_str(&body, "generateName").map(str::to_owned);
        if name_of(&body).is_empty() {
            match &generate {
                Some(prefix) if !prefix.is_empty() => {
                    meta_mut(&mut body)
                        .insert("name".into(), json!(format!("{prefix}{}", names::random_suffix())));
                }
                _ => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        &[Cause {
                            reason: "FieldValueRequired",
                            field: "metadata.name".into(),
                            message: "Required value: name or generateName is required".into(),
                        }],
                    ));
                }
            }
        }
        let name = name_of(&body);
        check_names(rt, &name, generate.as_deref())?;
        self.check_namespace(rt, ns, &name).await?;
        let warnings = self.validate_body(rt, version, &mut body, opts)?;
        {
            let meta = meta_mut(&mut body);
            for server_field in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "selfLink",
            ] {
                meta.remove(server_field);
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(time::now_rfc3339()));
            meta.insert("generation".into(), json!(1));
            if meta.get("managedFields").is_some_and(|m| !m.is_array()) {
                meta.remove("managedFields");
            }
        }
        strategy::prepare_create(rt, &mut body);
        let stored = to_storage(rt, body);
        typed::decode_check(rt, version, &stored)?;
        self.admit(rt, Operation::Create, None, &stored).await?;
        self.call_webhooks(&Review {
            rt,
            version,
            operation: WebhookOperation::Create,
            subresource: None,
            namespace: ns,
            name: &name,
            old: None,
            new: Some(&stored),
            dry_run: opts.dry_run,
        })
        .await?;
        if opts.dry_run {
            return Ok(WriteResult { object: to_version(rt, version, stored), warnings, created: true });
        }
        let object_key = key(rt, ns.filter(|_| rt.namespaced()), &name);
        match self.cas(object_key, None, Mutation::Put(stored)).await? {
            Ok(Some(obj)) => {
                Ok(WriteResult { object: to_version(rt, version, obj), warnings, created: true })
            }
            Ok(None) => Err(ApiError::internal("the store did not return the created object")),
            Err(_) => Err(ApiError::already_exists(rt, &name)),
        }
    }

    /// Replaces an object (PUT), on the main resource or the `status` subresource.
    #[allow(clippy::too_many_arguments)] // The verb's parameters, as the API defines them.
    pub async fn update(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        self.check_type_meta(rt, version, &mut body)?;
        let body_name = name_of(&body);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        meta_mut(&mut body).insert("name".into(), json!(name));
        if rt.namespaced() {
            meta_mut(&mut body).insert("namespace".into(), json!(ns.unwrap_or("default")));
        }
        let warnings = self.validate_body(rt, version, &mut body, opts)?;
        for _ in 0..MAX_RETRIES {
            let current =
                self.get_stored(rt, ns, name).await?.ok_or_else(|| ApiError::not_found(rt, name))?;
            match resource_version(&body) {
                None if !rt.builtin => {
                    return Err(ApiError::invalid(
                        rt,
                        name,
                        &[Cause {
                            reason: "FieldValueInvalid",
                            field: "metadata.resourceVersion".into(),
                            message: "Invalid value: 0x0: must be specified for an update".into(),
                        }],
                    ));
                }
                Some(rv) if Some(&rv) != resource_version(&current).as_ref() => {
                    return Err(ApiError::conflict(rt, name));
                }
                _ => {}
            }
            let candidate = to_storage(rt, body.clone());
            let new = merge_for_update(rt, &current, candidate, subresource);
            let target = UpdateTarget { rt, version, ns, name, subresource };
            match self.finish_write(&target, current, new, opts).await? {
                Some(object) => return Ok(WriteResult { object, warnings, created: false }),
                None => continue,
            }
        }
        Err(ApiError::conflict(rt, name))
    }

    /// Patches an object. Server-side apply creates it when missing.
    #[allow(clippy::too_many_arguments)] // The verb's parameters, as the API defines them.
    pub async fn patch(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        if patch_type == PatchType::Strategic && !rt.builtin {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let manager = opts.field_manager.clone().unwrap_or_default();
        if patch_type == PatchType::Apply && manager.is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        for _ in 0..MAX_RETRIES {
            let Some(current) = self.get_stored(rt, ns, name).await? else {
                if patch_type == PatchType::Apply && subresource.is_none() {
                    let mut applied = body.clone();
                    if name_of(&applied).is_empty() {
                        meta_mut(&mut applied).insert("name".into(), json!(name));
                    }
                    if name_of(&applied) != name {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({}) does not match the name on the URL ({name})",
                            name_of(&applied)
                        )));
                    }
                    let managed = managed_fields_entry(&manager, &rt.api_version(version), &applied);
                    meta_mut(&mut applied).insert("managedFields".into(), json!([managed]));
                    return self.create(rt, version, ns, applied, opts).await;
                }
                return Err(ApiError::not_found(rt, name));
            };
            let view = to_version(rt, version, current.clone());
            let patched = match patch_type {
                PatchType::Merge => patch::merge(&view, &body),
                PatchType::Json => patch::json(&view, &body),
                PatchType::Strategic => patch::strategic(&view, &body),
                PatchType::Apply => {
                    let transferred = apply_conflicts(rt, name, &view, &body, &manager, opts.force)?;
                    let previous = previous_applied(&current, &manager);
                    patch::apply(&view, &body, previous.as_ref()).map(|mut out| {
                        if let Some(entries) = transferred {
                            meta_mut(&mut out).insert("managedFields".into(), json!(entries));
                        }
                        out
                    })
                }
            };
            let mut patched = patched.map_err(|e| match e {
                PatchError::Malformed(m) => ApiError::bad_request(m),
                PatchError::Failed(m) => {
                    let mut err = ApiError::invalid(rt, name, &[]);
                    err.message = m;
                    err
                }
            })?;
            if name_of(&patched) != name {
                // The apiserver's checkName on the patched object.
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    name_of(&patched)
                )));
            }
            if resource_version(&patched) != resource_version(&current) {
                return Err(ApiError::conflict(rt, name));
            }
            self.check_type_meta(rt, version, &mut patched)?;
            let warnings = self.validate_body(rt, version, &mut patched, opts)?;
            if patch_type == PatchType::Apply {
                set_managed_fields(&mut patched, &manager, &rt.api_version(version), &body);
            }
            let candidate = to_storage(rt, patched);
            let new = merge_for_update(rt, &current, candidate, subresource);
            let target = UpdateTarget { rt, version, ns, name, subresource };
            if let Some(object) = self.finish_write(&target, current, new, opts).await? {
                return Ok(WriteResult { object, warnings, created: false });
            }
        }
        Err(ApiError::conflict(rt, name))
    }

    /// Applies the common update rules and writes `target` from `current` to `new`. `Ok(None)`
    /// means the object changed meanwhile: retry.
    async fn finish_write(
        &self,
        target: &UpdateTarget<'_>,
        current: Value,
        new: Value,
        opts: &WriteOptions,
    ) -> Result<Option<Value>, ApiError> {
        let UpdateTarget { rt, version, ns, name, subresource } = *target;
        if is_deleting(&current) {
            let old = finalizers(&current);
            let added: Vec<String> = finalizers(&new).into_iter().filter(|f| !old.contains(f)).collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[Cause {
                        reason: "FieldValueForbidden",
                        field: "metadata.finalizers".into(),
                        message: format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    }],
                ));
            }
        }
        if subresource.is_none() {
            let causes = strategy::validate_update(rt, &current, &new);
            if !causes.is_empty() {
                return Err(ApiError::invalid(rt, name, &causes));
            }
        }
        typed::decode_check(rt, version, &new)?;
        if subresource.is_none() {
            self.admit(rt, Operation::Update, Some(&current), &new).await?;
        }
        if !same_object(&current, &new) {
            self.call_webhooks(&Review {
                rt,
                version,
                operation: WebhookOperation::Update,
                subresource,
                namespace: ns,
                name,
                old: Some(&current),
                new: Some(&new),
                dry_run: opts.dry_run,
            })
            .await?;
        }
        if same_object(&current, &new) {
            return Ok(Some(to_version(rt, version, current)));
        }
        if opts.dry_run {
            return Ok(Some(to_version(rt, version, new)));
        }
        let expected = resource_version(&current);
        let object_key = key(rt, ns.filter(|_| rt.namespaced()), name);
        let mutation =
            if is_deleting(&new) && is_releasable(rt, &new) { Mutation::Delete } else { Mutation::Put(new) };
        match self.cas(object_key, expected, mutation).await? {
            Ok(Some(obj)) => Ok(Some(to_version(rt, version, obj))),
            Ok(None) => Err(ApiError::not_found(rt, name)),
            Err(_) => Ok(None),
        }
    }

    /// Deletes an object: at once, or by setting `deletionTimestamp` while finalizers remain.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        for _ in 0..MAX_RETRIES {
            let current =
                self.get_stored(rt, ns, name).await?.ok_or_else(|| ApiError::not_found(rt, name))?;
            if let Some(uid) = &opts.uid
                && meta_str(&current, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict_message(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&current, "uid").unwrap_or_default()
                )));
            }
            if let Some(rv) = &opts.resource_version
                && resource_version(&current).as_ref() != Some(rv)
            {
                return Err(ApiError::conflict(rt, name));
            }
            let mut new = current.clone();
            let extra = match opts.propagation {
                Some(Propagation::Foreground) => Some("foregroundDeletion"),
                Some(Propagation::Orphan) => Some("orphan"),
                _ => None,
            };
            if let Some(f) = extra {
                let mut fs = finalizers(&new);
                if !fs.iter().any(|x| x == f) && !is_deleting(&current) {
                    fs.push(f.to_owned());
                    meta_mut(&mut new).insert("finalizers".into(), json!(fs));
                }
            }
            if rt.group.is_empty() && rt.plural == "namespaces" {
                new["status"]["phase"] = json!("Terminating");
            }
            let releasable = is_releasable(rt, &new);
            if is_deleting(&current) && same_object(&current, &new) {
                return Ok(to_version(rt, version, current));
            }
            if !is_deleting(&current) {
                self.call_webhooks(&Review {
                    rt,
                    version,
                    operation: WebhookOperation::Delete,
                    subresource: None,
                    namespace: ns,
                    name,
                    old: Some(&current),
                    new: None,
                    dry_run: opts.dry_run,
                })
                .await?;
            }
            if opts.dry_run {
                return Ok(to_version(rt, version, new));
            }
            let mutation = if releasable {
                Mutation::Delete
            } else {
                let meta = meta_mut(&mut new);
                if !meta.contains_key("deletionTimestamp") {
                    meta.insert("deletionTimestamp".into(), json!(time::now_rfc3339()));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                    let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
                    meta.insert("generation".into(), json!(generation + 1));
                }
                Mutation::Put(new)
            };
            match self
                .cas(key(rt, ns.filter(|_| rt.namespaced()), name), resource_version(&current), mutation)
                .await?
            {
                Ok(Some(obj)) => return Ok(to_version(rt, version, obj)),
                Ok(None) => return Err(ApiError::not_found(rt, name)),
                Err(_) => continue,
            }
        }
        Err(ApiError::conflict(rt, name))
    }
}

/// Builds the object an update stores from the current one and the client's candidate.
fn merge_for_update(
    rt: &ResourceType,
    current: &Value,
    mut candidate: Value,
    subresource: Option<&str>,
) -> Value {
    let mut new = if subresource == Some("status") {
        let mut n = current.clone();
        match candidate.get("status") {
            Some(s) => n["status"] = s.clone(),
            None => {
                if let Some(m) = n.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        n
    } else {
        if rt.has_status {
            match current.get("status") {
                Some(s) => candidate["status"] = s.clone(),
                None => {
                    if let Some(m) = candidate.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        candidate
    };
    let old_meta = current.get("metadata").cloned().unwrap_or(json!({}));
    let meta = meta_mut(&mut new);
    for server_field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
        "resourceVersion",
    ] {
        match old_meta.get(server_field) {
            Some(v) => meta.insert(server_field.into(), v.clone()),
            None => meta.remove(server_field),
        };
    }
    if !meta.contains_key("managedFields")
        && let Some(m) = old_meta.get("managedFields")
    {
        meta.insert("managedFields".into(), m.clone());
    }
    let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
    let bump = spec_changed(current, &new);
    meta_mut(&mut new).insert("generation".into(), json!(if bump { generation + 1 } else { generation }));
    new
}

fn managed_fields_entry(manager: &str, api_version: &str, applied: &Value) -> Value {
    json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": time::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fieldset::of(applied)
    })
}

/// Server-side apply's conflicts: fields another applier owns that this configuration sets to a
/// different value are a 409 (apiserver's fieldmanager `NewConflictError`), unless `force`, which
/// takes them over: then the other managers' entries without them are returned.
fn apply_conflicts(
    rt: &ResourceType,
    name: &str,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Option<Vec<Value>>, ApiError> {
    let entries: Vec<Value> =
        live.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    let applied = fieldset::of(config);
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for entry in entries.iter().filter(|e| e["manager"] != manager && e["operation"] == "Apply") {
        let other = entry["manager"].as_str().unwrap_or_default().to_owned();
        for path in fieldset::conflicts(live, config, &applied, &entry["fieldsV1"]) {
            conflicts.push((other.clone(), path));
        }
    }
    if conflicts.is_empty() {
        return Ok(None);
    }
    if force {
        let transferred = entries
            .into_iter()
            .map(|mut entry| {
                for (other, path) in &conflicts {
                    if entry["manager"] == other.as_str() && entry["operation"] == "Apply" {
                        entry["fieldsV1"] = fieldset::without(&entry["fieldsV1"], path);
                    }
                }
                entry
            })
            .collect();
        return Ok(Some(transferred));
    }
    let message = if let [(other, path)] = conflicts.as_slice() {
        format!("Apply failed with 1 conflict: conflict with {other:?}: {path}")
    } else {
        let mut managers: Vec<&str> = conflicts.iter().map(|(m, _)| m.as_str()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m:?}:"));
            lines.extend(conflicts.iter().filter(|(o, _)| o == m).map(|(_, p)| format!("- {p}")));
        }
        format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
    };
    let mut err = ApiError::conflict(rt, name);
    err.message = message;
    err.details = Some(json!({
        "causes": conflicts.iter().map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m:?}"), "field": p})).collect::<Vec<_>>()
    }));
    Err(err)
}

fn previous_applied(current: &Value, manager: &str) -> Option<Value> {
    current
        .pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|m| m["manager"] == manager && m["operation"] == "Apply")
        .map(|m| m["fieldsV1"].clone())
}

fn set_managed_fields(obj: &mut Value, manager: &str, api_version: &str, applied: &Value) {
    let mut entries: Vec<Value> = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !(m["manager"] == manager && m["operation"] == "Apply"))
        .collect();
    let new_entry = managed_fields_entry(manager, api_version, applied);
    let unchanged = previous_applied(obj, manager).is_some_and(|prev| prev == new_entry["fieldsV1"]);
    if unchanged {
        return;
    }
    entries.push(new_entry);
    meta_mut(obj).insert("managedFields".into(), json!(entries));
}

/// Refuses a name (or `generateName` prefix) the kind's name rule does not allow, with one cause
/// per problem, as `ValidateObjectMeta` reports them.
fn check_names(rt: &ResourceType, name: &str, generate: Option<&str>) -> Result<(), ApiError> {
    let rule = NameRule::for_kind(rt.group, &rt.plural);
    let mut causes = Vec::new();
    if let Some(prefix) = generate.filter(|p| !p.is_empty())
        && let Err(messages) = rule.check_prefix(prefix)
    {
        causes.extend(messages.into_iter().map(|m| Cause {
            reason: "FieldValueInvalid",
            field: "metadata.generateName".into(),
            message: format!("Invalid value: {prefix:?}: {m}"),
        }));
    }
    if let Err(messages) = rule.check(name) {
        causes.extend(messages.into_iter().map(|m| Cause {
            reason: "FieldValueInvalid",
            field: "metadata.name".into(),
            message: format!("Invalid value: {name:?}: {m}"),
        }));
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(rt, name, &causes)) }
}

fn truncate(s: &str) -> String {
    if s.len() > 200 {
        format!("{}...", &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)])
    } else {
        s.to_owned()
    }
}
