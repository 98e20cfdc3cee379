//! The scheduler's Kubernetes client: the given configuration plus our `User-Agent` (so
//! audit logs and request records name us) and a layer that counts every request in
//! `kube_requests_total{verb,resource,code}`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response};
use kube::client::{Body, ClientBuilder};
use kube::Client;
use tower::{Layer, Service};

use crate::metrics::{KubeRequest, Metrics};

pub const USER_AGENT: &str = concat!("slurm-pod-scheduler/", env!("CARGO_PKG_VERSION"));

pub fn build(mut config: kube::Config, metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    config.headers.push((
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    ));
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&CountLayer(metrics))
        .build())
}

#[derive(Clone)]
struct CountLayer(Arc<Metrics>);

impl<S> Layer<S> for CountLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<Body>> for Counted<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (verb, resource) = classify(req.method(), req.uri().path(), req.uri().query());
        let metrics = self.metrics.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let result = answer.await;
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            metrics
                .kube_requests
                .get_or_create(&KubeRequest {
                    verb: verb.into(),
                    resource,
                    code,
                })
                .inc();
            result
        })
    }
}

/// The Kubernetes verb and `resource[/subresource]` of a request, from its path.
fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Skip the group/version prefix: `api/v1` or `apis/GROUP/VERSION`.
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..).unwrap_or_default(),
        Some(&"apis") => parts.get(3..).unwrap_or_default(),
        _ => return (verb(method, false, query), path.to_string()),
    };
    let rest = match rest {
        ["namespaces", _ns, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
        [] => (String::new(), false),
    };
    (verb(method, named, query), resource)
}

fn verb(method: &Method, named: bool, query: Option<&str>) -> &'static str {
    let watching = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_resources_from_paths() {
        let cases = [
            (
                Method::GET,
                "/api/v1/pods",
                Some("fieldSelector=x&watch=true"),
                ("watch", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods",
                None,
                ("list", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods/p",
                None,
                ("get", "pods"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/pods/p/binding",
                None,
                ("create", "pods/binding"),
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/a/pods/p/status",
                None,
                ("patch", "pods/status"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/pods/p",
                None,
                ("delete", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/nodes",
                Some("watch=true"),
                ("watch", "nodes"),
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/a/events",
                None,
                ("create", "events"),
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                None,
                ("update", "leases"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a",
                None,
                ("get", "namespaces"),
            ),
        ];
        for (method, path, query, (want_verb, want_resource)) in cases {
            let (verb, resource) = classify(&method, path, query);
            assert_eq!(
                (verb, resource.as_str()),
                (want_verb, want_resource),
                "{method} {path}"
            );
        }
    }
}
