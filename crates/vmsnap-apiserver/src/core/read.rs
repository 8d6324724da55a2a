//! get and list, with label and field selectors.

use serde_json::Value;
use vmsnap_api::registry::ResourceType;

use super::Core;
use super::objects::{key, storage_resource, to_version};
use crate::error::ApiError;
use crate::pure::selector::{FieldSelector, LabelSelector};

/// Which objects a list or watch selects.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Selection {
    /// Parses the `labelSelector` and `fieldSelector` query parameters.
    pub fn parse(
        rt: &ResourceType,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Selection, ApiError> {
        let labels = LabelSelector::parse(labels.unwrap_or("")).map_err(|e| ApiError::bad_request(e.0))?;
        let is_event = rt.plural == "events";
        let fields =
            FieldSelector::parse(fields.unwrap_or(""), is_event).map_err(|e| ApiError::bad_request(e.0))?;
        Ok(Selection { labels, fields })
    }

    /// Whether a stored object is selected.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches(object)
    }
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Selectors.
    pub selection: Selection,
}

impl Core {
    /// Reads one object as a client of `version` sees it.
    pub async fn get(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.get_stored(rt, ns, name)
            .await?
            .map(|v| to_version(rt, version, v))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Reads one object in its stored form.
    pub async fn get_stored(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        Ok(self.store.get(&key(rt, ns, name)).await?.map(|v| (*v).clone()))
    }

    /// Lists objects (in one namespace or all) with the revision the list is consistent at.
    pub async fn list(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        options: &ListOptions,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let (items, revision) = self.store.list(&storage_resource(rt), ns).await?;
        let items = items
            .iter()
            .filter(|o| options.selection.matches(o))
            .map(|o| to_version(rt, version, (**o).clone()))
            .collect();
        Ok((items, revision))
    }
}
