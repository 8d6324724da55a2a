//! get and list, with label and field selectors, in pages (`limit`, `continue`).

use serde_json::Value;
use vmsnap_api::registry::ResourceType;
use vmsnap_store::{PageRequest, WatchError};

use super::Core;
use super::objects::{key, storage_resource, to_version};
use crate::error::ApiError;
use crate::pure::continue_token::ContinueToken;
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
        let labels =
            LabelSelector::parse(labels.unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
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
    /// At most this many objects in the answer (`limit`; `None` or 0: all).
    pub limit: Option<usize>,
    /// Where the previous page ended (`continue`).
    pub continue_token: Option<String>,
}

/// A list, or one page of it.
#[derive(Clone, Debug, Default)]
pub struct ListResult<T = Value> {
    /// The objects, in the client's version (or what the caller made of them).
    pub items: Vec<T>,
    /// The revision the list is consistent at (every page of a list has the first page's).
    pub revision: u64,
    /// Where the next page starts, when more objects follow.
    pub continue_token: Option<String>,
}

const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

/// How long a read or watch from a revision the store has not reached yet waits for it, as
/// kube-apiserver's watch cache does (`blockTimeout`).
const FRESHNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Core {
    /// Waits until the store has reached `revision`, for at most [`FRESHNESS_WAIT`]; then a
    /// 504 "Too large resource version". A watch from a future revision would otherwise stay
    /// open and deliver nothing.
    pub async fn wait_for_revision(&self, revision: u64) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
        loop {
            let current = self.store.revision();
            if current >= revision {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::too_large_resource_version(revision, current));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

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

    /// Lists objects (in one namespace or all), or one page of them, with the revision the list is
    /// consistent at.
    pub async fn list(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        options: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let (rt_owned, version) = (rt.clone(), version.to_owned());
        self.list_as(rt, ns, options, move |object| to_version(&rt_owned, &version, object)).await
    }

    /// [`Core::list`] with each object serialized as JSON as soon as it is read, for a response:
    /// the server never holds a whole list of parsed objects, whatever its length.
    pub async fn list_json(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        options: &ListOptions,
    ) -> Result<ListResult<Vec<u8>>, ApiError> {
        let (rt_owned, version) = (rt.clone(), version.to_owned());
        self.list_as(rt, ns, options, move |object| {
            serde_json::to_vec(&to_version(&rt_owned, &version, object)).expect("a JSON value serializes")
        })
        .await
    }

    async fn list_as<T: Send + 'static>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        options: &ListOptions,
        mut convert: impl FnMut(Value) -> T + Send + 'static,
    ) -> Result<ListResult<T>, ApiError> {
        let resume = options.continue_token.as_deref().map(ContinueToken::decode).transpose()?;
        let request = PageRequest {
            at: resume.as_ref().map(|token| token.revision),
            after: resume.map(|token| (token.namespace, token.name)),
            limit: options.limit.filter(|limit| *limit > 0),
        };
        let selection = options.selection.clone();
        let select = Box::new(move |object: Value| selection.matches(&object).then(|| convert(object)));
        let page = match self.store.list_page(&storage_resource(rt), ns, request, select).await? {
            Ok(page) => page,
            Err(WatchError::Expired { .. }) => return Err(ApiError::expired(EXPIRED_CONTINUE)),
            Err(other) => return Err(ApiError::internal(other.to_string())),
        };
        let continue_token = page
            .next_after
            .map(|(namespace, name)| ContinueToken { revision: page.revision, namespace, name }.encode());
        Ok(ListResult { items: page.items, revision: page.revision, continue_token })
    }
}
