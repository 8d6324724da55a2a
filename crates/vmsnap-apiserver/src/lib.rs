//! Kubernetes-compatible REST API server (discovery, OpenAPI v3, CRUD, watch, patch, tables, GC) over vmsnap-store.
