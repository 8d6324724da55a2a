//! Admission rules of KubeVirt's snapshot, restore and VM webhooks, as pure functions.
