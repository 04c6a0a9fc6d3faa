//! Reverse routes: the longest configured prefix that matches the request
//! path on a segment boundary wins; the prefix is stripped and the rest of
//! the path and the query are appended to the upstream URL.

use std::borrow::Cow;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};

use crate::capture::api::RouteProtocol;
use crate::config::Route;

#[derive(Debug)]
pub struct RouteTable {
    /// Longest prefix first.
    routes: Vec<Route>,
}

/// Where one request goes.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// A configured route, or one made for a forward-proxied origin.
    pub route: Cow<'a, Route>,
    /// Path after the prefix (starts with '/'), no query.
    pub rest: &'a str,
    pub upstream_uri: Uri,
}

/// A route for requests proxied to `origin` (forward proxy, intercepted
/// tunnel): its label is the origin, its path is the request's whole path.
pub fn origin_route<'a>(
    origin: Uri,
    protocol: RouteProtocol,
    uri: &'a Uri,
) -> Option<Resolved<'a>> {
    let route = Route {
        prefix: format!(
            "{}://{}",
            origin.scheme_str()?,
            origin.authority()?.as_str()
        ),
        upstream: origin,
        protocol,
    };
    let upstream_uri = join(&route.upstream, uri.path(), uri.query())?;
    Some(Resolved {
        route: Cow::Owned(route),
        rest: uri.path(),
        upstream_uri,
    })
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn resolve<'a>(&'a self, uri: &'a Uri) -> Option<Resolved<'a>> {
        let path = uri.path();
        let route = self.routes.iter().find(|r| matches(&r.prefix, path))?;
        let rest = if route.prefix == "/" {
            path
        } else {
            &path[route.prefix.len()..]
        };
        let upstream_uri = join(&route.upstream, rest, uri.query())?;
        Some(Resolved {
            route: Cow::Borrowed(route),
            rest,
            upstream_uri,
        })
    }
}

fn matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn join(upstream: &Uri, rest: &str, query: Option<&str>) -> Option<Uri> {
    let base = upstream.path().trim_end_matches('/');
    let mut pq = String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(base);
    pq.push_str(rest);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let scheme: Scheme = upstream.scheme()?.clone();
    let authority: Authority = upstream.authority()?.clone();
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(PathAndQuery::try_from(pq).ok()?)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::api::RouteProtocol;

    fn table() -> RouteTable {
        let r = |p: &str, u: &str| Route {
            prefix: p.into(),
            upstream: u.parse().unwrap(),
            protocol: RouteProtocol::Auto,
        };
        RouteTable::new(vec![
            r("/openai", "https://api.openai.com"),
            r("/openai/azure", "https://az.example.com/openai/"),
            r("/anthropic", "http://127.0.0.1:9000/base"),
        ])
    }

    #[test]
    fn longest_prefix_on_segment_boundary() {
        let t = table();
        let uri: Uri = "/openai/v1/chat/completions?x=1".parse().unwrap();
        let r = t.resolve(&uri).unwrap();
        assert_eq!(
            r.upstream_uri,
            "https://api.openai.com/v1/chat/completions?x=1"
        );
        assert_eq!(r.rest, "/v1/chat/completions");
        let uri: Uri = "/openai/azure/deployments/d/chat/completions"
            .parse()
            .unwrap();
        assert_eq!(
            t.resolve(&uri).unwrap().upstream_uri,
            "https://az.example.com/openai/deployments/d/chat/completions"
        );
        let uri: Uri = "/anthropic/v1/messages".parse().unwrap();
        assert_eq!(
            t.resolve(&uri).unwrap().upstream_uri,
            "http://127.0.0.1:9000/base/v1/messages"
        );
        assert!(t.resolve(&"/openaix/v1".parse().unwrap()).is_none());
        assert!(t.resolve(&"/other".parse().unwrap()).is_none());
        assert_eq!(
            t.resolve(&"/openai".parse().unwrap()).unwrap().upstream_uri,
            "https://api.openai.com/"
        );
    }
}
