//! The object service: the semantics of every verb on every kind, independent of HTTP.
//! The HTTP handlers, the garbage collector and the namespace finalizer all go through it.

mod admit;
pub mod events_view;
pub mod objects;
mod read;
pub mod strategy;
mod typed;
mod webhooks;
mod write;

use std::sync::Arc;

use vmsnap_store::Store;

pub use read::{ListOptions, ListResult, Selection};
pub use write::{DeleteOptions, FieldValidation, Propagation, WriteOptions, WriteResult};

/// Shared state of the object service.
pub struct Core {
    pub(crate) store: Store,
    /// The ValidatingWebhookConfigurations, cached between their changes.
    pub(crate) webhooks: webhooks::WebhookCache,
}

impl Core {
    /// A service over `store`.
    pub fn new(store: Store) -> Arc<Core> {
        Arc::new(Core { store, webhooks: Default::default() })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
