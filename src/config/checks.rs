//! Validation primitives: each checks one value, pushes a message naming the
//! key and the fix into `errors`, and returns what it could make of it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Uri;

use crate::capture::api::RouteProtocol;

use super::{Route, units};

pub fn addr(key: &str, value: &str, errors: &mut Vec<String>) -> Option<SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.push(format!(
                "{key}: {value:?} is not an address; write IP:PORT, e.g. 127.0.0.1:4480"
            ));
            None
        }
    }
}

pub fn duration(
    key: &str,
    value: Option<String>,
    default: &str,
    errors: &mut Vec<String>,
) -> Duration {
    match units::parse_duration(value.as_deref().unwrap_or(default)) {
        Ok(d) if d.is_zero() => {
            errors.push(format!("{key}: must be longer than zero"));
            Duration::ZERO
        }
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("{key}: {e}"));
            Duration::ZERO
        }
    }
}

pub fn route(
    key: &str,
    prefix: &str,
    upstream: &str,
    protocol: RouteProtocol,
    errors: &mut Vec<String>,
) -> Option<Route> {
    let mut ok = true;
    let prefix = prefix.trim();
    if !prefix.starts_with('/') {
        errors.push(format!(
            "{key}: prefix {prefix:?} must start with '/', e.g. /openai"
        ));
        ok = false;
    }
    let prefix = match prefix.trim_end_matches('/') {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    let uri = match upstream.trim().parse::<Uri>() {
        Ok(u) => {
            let scheme_ok = matches!(u.scheme_str(), Some("http") | Some("https"));
            if !scheme_ok || u.authority().is_none() {
                errors.push(format!(
                    "{key}: upstream {upstream:?} must be an http:// or https:// URL with a host, e.g. https://api.openai.com"
                ));
                ok = false;
            }
            if u.query().is_some() {
                errors.push(format!(
                    "{key}: upstream {upstream:?} must not have a query string; the agent's query is forwarded as is"
                ));
                ok = false;
            }
            Some(u)
        }
        Err(e) => {
            errors.push(format!("{key}: upstream {upstream:?} is not a URL ({e})"));
            ok = false;
            None
        }
    };
    if ok {
        uri.map(|upstream| Route {
            prefix,
            upstream,
            protocol,
        })
    } else {
        None
    }
}

pub fn check_ca_file(path: &Path, errors: &mut Vec<String>) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    match CertificateDer::pem_file_iter(path) {
        Ok(iter) => {
            let certs: Result<Vec<_>, _> = iter.collect();
            match certs {
                Ok(c) if c.is_empty() => errors.push(format!(
                    "upstream.ca_file (--upstream-ca) {}: no PEM certificates in it",
                    path.display()
                )),
                Ok(_) => {}
                Err(e) => errors.push(format!(
                    "upstream.ca_file (--upstream-ca) {}: not valid PEM ({e})",
                    path.display()
                )),
            }
        }
        Err(e) => errors.push(format!(
            "upstream.ca_file (--upstream-ca) {}: {e}",
            path.display()
        )),
    }
}

/// A size: from the flag's text, or the file's number or text, or the default.
pub fn size(
    key: &str,
    flag: Option<String>,
    file: Option<super::file::SizeValue>,
    default: Option<&str>,
    errors: &mut Vec<String>,
) -> Option<u64> {
    use super::file::SizeValue;
    let parsed = match (flag, file) {
        (Some(s), _) | (None, Some(SizeValue::Text(s))) => units::parse_size(&s),
        (None, Some(SizeValue::Bytes(n))) => Ok(n as usize),
        (None, None) => match default {
            Some(d) => units::parse_size(d),
            None => return None,
        },
    };
    match parsed {
        Ok(0) => {
            errors.push(format!("{key} must be more than 0"));
            None
        }
        Ok(n) => Some(n as u64),
        Err(e) => {
            errors.push(format!("{key}: {e}"));
            None
        }
    }
}
