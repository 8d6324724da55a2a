//! What the client asked for in `Accept`: a plain object, a Table, or partial object metadata.

/// The response representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    /// The object (or list) itself.
    Object,
    /// A `meta.k8s.io/v1` Table.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// Reads the first acceptable representation from an Accept header (clients list preferences in order).
pub fn representation(accept: &str) -> Representation {
    for part in accept.split(',') {
        let part = part.trim();
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        let media = params.first().copied().unwrap_or("");
        if media != "application/json" && media != "*/*" && media != "application/yaml" {
            continue;
        }
        let has = |p: &str| params.iter().any(|x| x.replace(' ', "") == p);
        if has("as=Table") {
            return Representation::Table;
        }
        if has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList") {
            return Representation::Metadata;
        }
        if params.iter().any(|p| p.starts_with("as=")) {
            continue;
        }
        return Representation::Object;
    }
    Representation::Object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_tables() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(representation(a), Representation::Table);
    }

    #[test]
    fn kube_rs_metadata_watches() {
        let a = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(representation(a), Representation::Metadata);
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        assert_eq!(
            representation("application/vnd.kubernetes.protobuf,application/json"),
            Representation::Object
        );
        assert_eq!(representation(""), Representation::Object);
    }
}
