//! What a request addresses and asks for: the resource, namespace, name and subresource
//! from its path, the verb, and the list/watch/delete options from its query string.
//!
//! The same classification serves the handlers, the request log, and any layer that
//! wants to act on "the next N patches of pods/status" without parsing URLs itself.

use std::collections::HashMap;

use axum::http::Method;

use crate::error::{ApiError, ApiResult};
use crate::resource::Resource;

/// A request path resolved to an API object or collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The resource addressed.
    pub resource: Resource,
    /// Namespace from the path, when namespaced.
    pub namespace: Option<String>,
    /// Object name, absent for collections.
    pub name: Option<String>,
    /// `status`, `binding`, `eviction`, ...
    pub subresource: Option<String>,
    /// The legacy `POST /api/v1/namespaces/{ns}/bindings` endpoint.
    pub legacy_bindings: bool,
}

/// Everything a request log or fault layer needs to know about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection,
    /// or the lower-case HTTP method for non-resource paths.
    pub verb: String,
    /// Plural resource name (empty for non-resource paths such as discovery).
    pub resource: String,
    /// API group of the resource.
    pub group: String,
    /// Subresource, if any.
    pub subresource: Option<String>,
    /// Namespace, if any.
    pub namespace: Option<String>,
    /// Object name, if any.
    pub name: Option<String>,
    /// The request path.
    pub path: String,
}

/// Parse an API path (`/api/v1/...` or `/apis/{group}/v1/...`).
pub fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, "v1", rest @ ..] => (*group, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let namespaced_path = rest[0] == "namespaces"
        && rest.len() >= 3
        && (rest[2] == "bindings"
            || Resource::from_path(group, rest[2]).is_some_and(|r| r.namespaced()));
    if namespaced_path {
        let namespace = Some(rest[1].to_string());
        if rest[2] == "bindings" && group.is_empty() && rest.len() == 3 {
            return Some(Target {
                resource: Resource::Pods,
                namespace,
                name: None,
                subresource: Some("binding".into()),
                legacy_bindings: true,
            });
        }
        let resource = Resource::from_path(group, rest[2])?;
        if rest.len() > 5 {
            return None;
        }
        return Some(Target {
            resource,
            namespace,
            name: rest.get(3).map(|s| s.to_string()),
            subresource: rest.get(4).map(|s| s.to_string()),
            legacy_bindings: false,
        });
    }
    let resource = Resource::from_path(group, rest[0])?;
    if rest.len() > 3 {
        return None;
    }
    Some(Target {
        resource,
        namespace: None,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
        legacy_bindings: false,
    })
}

/// Query parameters, first value of each.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parse a raw query string.
    pub fn parse(raw: Option<&str>) -> Query {
        let map = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .fold(HashMap::new(), |mut m, (k, v)| {
                m.entry(k).or_insert(v);
                m
            });
        Query(map)
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`1`, `true`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1") | Some("true") | Some("True"))
    }

    /// An integer parameter; a malformed one is a 400.
    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }
}

/// Classify a request for logging and fault injection.
pub fn classify(method: &Method, path: &str, query: &Query) -> RequestInfo {
    let Some(target) = parse_path(path) else {
        return RequestInfo {
            verb: method.as_str().to_lowercase(),
            resource: String::new(),
            group: String::new(),
            subresource: None,
            namespace: None,
            name: None,
            path: path.to_string(),
        };
    };
    let collection = target.name.is_none() && !target.legacy_bindings;
    let verb = match *method {
        Method::GET if query.flag("watch") => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    };
    RequestInfo {
        verb: verb.to_string(),
        resource: target.resource.plural().to_string(),
        group: target.resource.group().to_string(),
        subresource: target.subresource.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        path: path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_targets() {
        let t = parse_path("/api/v1/namespaces/ns/pods/p/binding").unwrap();
        assert_eq!(t.resource, Resource::Pods);
        assert_eq!(t.namespace.as_deref(), Some("ns"));
        assert_eq!(t.name.as_deref(), Some("p"));
        assert_eq!(t.subresource.as_deref(), Some("binding"));
        let t = parse_path("/api/v1/namespaces/ns").unwrap();
        assert_eq!(
            (t.resource, t.name.as_deref()),
            (Resource::Namespaces, Some("ns"))
        );
        let t = parse_path("/api/v1/namespaces/ns/status").unwrap();
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_path("/apis/events.k8s.io/v1/events").unwrap();
        assert_eq!((t.resource, t.namespace), (Resource::Events, None));
        assert!(
            parse_path("/api/v1/namespaces/ns/bindings")
                .unwrap()
                .legacy_bindings
        );
        assert!(parse_path("/apis/apps/v1/deployments").is_none());
    }

    #[test]
    fn verbs_follow_method_and_shape() {
        let q = Query::parse(Some("watch=1"));
        assert_eq!(classify(&Method::GET, "/api/v1/pods", &q).verb, "watch");
        let q = Query::default();
        assert_eq!(classify(&Method::GET, "/api/v1/pods", &q).verb, "list");
        assert_eq!(
            classify(&Method::DELETE, "/api/v1/namespaces/a/pods", &q).verb,
            "deletecollection"
        );
        let info = classify(&Method::PATCH, "/api/v1/namespaces/a/pods/p/status", &q);
        assert_eq!(
            (info.verb.as_str(), info.subresource.as_deref()),
            ("patch", Some("status"))
        );
    }
}
