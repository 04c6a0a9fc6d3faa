//! The CA end to end: files on disk, and real TLS handshakes (tokio-rustls
//! over an in-memory duplex) against clients that trust only our CA, or only
//! the public webpki roots.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn client(roots: RootCertStore, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn trusting(ca: &Authority) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    roots
}

/// One handshake; returns the negotiated ALPN protocol, or the client's error.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: tokio_rustls::TlsConnector,
    name: &str,
) -> Result<Option<Vec<u8>>, std::io::Error> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_io).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let result = async {
        let mut tls = client.connect(name, client_io).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    }
    .await;
    if result.is_ok() {
        server_task.await.unwrap().unwrap();
    } else {
        server_task.abort();
    }
    result
}

#[test]
fn creates_private_files_and_loads_the_same_ca_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state/ca");
    let (a, created) = Authority::load_or_create(&dir).unwrap();
    assert!(created);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    assert!(dir.join("ca-cert.pem").is_file());
    assert_eq!(
        std::fs::read_to_string(a.cert_path()).unwrap(),
        a.cert_pem()
    );
    assert!(a.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    let fp = a.fingerprint_sha256();
    assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");

    let (b, created) = Authority::load_or_create(&dir).unwrap();
    assert!(!created);
    assert_eq!(a.cert_der(), b.cert_der());
    assert_eq!(Authority::load(&dir).unwrap().cert_pem(), a.cert_pem());
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 2, "no stray temporary files");
}

#[test]
fn processes_creating_the_ca_at_once_all_end_up_with_the_same_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let results: Vec<(Vec<u8>, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let (ca, created) = Authority::load_or_create(&dir).unwrap();
                    (ca.cert_der().to_vec(), created)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    assert!(results.iter().all(|(der, _)| *der == results[0].0));
    Authority::load(&dir).unwrap();
}

#[test]
fn a_missing_file_is_a_clear_error_and_nothing_is_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    Authority::load_or_create(dir).unwrap();
    let key = std::fs::read(dir.join("ca-key.pem")).unwrap();
    std::fs::remove_file(dir.join("ca-cert.pem")).unwrap();
    let err = Authority::load_or_create(dir).unwrap_err().to_string();
    assert!(
        err.contains("ca-key.pem exists but") && err.contains("ca-cert.pem does not"),
        "{err}"
    );
    assert!(err.contains("sidetrace ca init"), "{err}");
    assert_eq!(std::fs::read(dir.join("ca-key.pem")).unwrap(), key);
    assert!(!dir.join("ca-cert.pem").exists());

    let err = Authority::load(tmp.path().join("nothing").as_path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sidetrace ca init"), "{err}");
}

#[test]
fn mismatched_or_garbled_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    Authority::load_or_create(&one).unwrap();
    Authority::load_or_create(&two).unwrap();
    std::fs::copy(two.join("ca-cert.pem"), one.join("ca-cert.pem")).unwrap();
    let err = Authority::load_or_create(&one).unwrap_err();
    assert!(matches!(err, CaError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("do not belong together"), "{err}");

    std::fs::write(one.join("ca-cert.pem"), "not a certificate").unwrap();
    let err = Authority::load_or_create(&one).unwrap_err();
    assert!(matches!(err, CaError::Cert { .. }), "{err}");

    std::fs::copy(two.join("ca-cert.pem"), one.join("ca-cert.pem")).unwrap();
    std::fs::write(
        one.join("ca-key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = Authority::load_or_create(&one).unwrap_err();
    assert!(matches!(err, CaError::Key { .. }), "{err}");
    assert!(err.to_string().contains("ca-key.pem"), "{err}");
}

#[test]
fn an_authority_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Authority>();
    send_sync::<Arc<rustls::ServerConfig>>();
}

#[test]
fn default_dir_is_beside_the_journal() {
    let journal = crate::journal::default_path();
    assert_eq!(
        Authority::default_dir(),
        journal.parent().unwrap().join("ca")
    );
}

#[tokio::test]
async fn leaves_verify_against_the_ca_and_only_against_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = Authority::load_or_create(tmp.path()).unwrap();
    let ours = client(trusting(&ca), &[b"h2", b"http/1.1"]);

    // By SNI, with the shared config: h2 is preferred when offered.
    let alpn = handshake(ca.server_config(), ours.clone(), "api.openai.com").await;
    assert_eq!(alpn.unwrap().as_deref(), Some(&b"h2"[..]));
    // A client offering only HTTP/1.1 gets it.
    let h1 = client(trusting(&ca), &[b"http/1.1"]);
    let alpn = handshake(ca.server_config(), h1, "api.openai.com").await;
    assert_eq!(alpn.unwrap().as_deref(), Some(&b"http/1.1"[..]));

    // An IP literal: clients send no SNI, so the CONNECT host decides.
    let config = ca.server_config_for("[127.0.0.1]").unwrap();
    handshake(config, ours.clone(), "127.0.0.1").await.unwrap();
    let config = ca.server_config_for("::1").unwrap();
    handshake(config, ours.clone(), "::1").await.unwrap();
    // ...and without a fallback such a handshake is refused.
    assert!(
        handshake(ca.server_config(), ours.clone(), "127.0.0.1")
            .await
            .is_err()
    );

    // A client that trusts only the public roots rejects our leaves.
    let public = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let err = handshake(
        ca.server_config(),
        client(public, &[b"h2"]),
        "api.openai.com",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // SNI wins over the fallback host; a leaf is valid for its host only.
    let other = ca.server_config_for("api.openai.com").unwrap();
    assert!(
        handshake(other.clone(), ours.clone(), "api.anthropic.com")
            .await
            .is_ok()
    );
    let err = handshake(other, ours.clone(), "127.0.0.2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // Leaves are cached per host, names normalized.
    let a = ca.certified_key_for("API.OpenAI.com.").unwrap();
    let b = ca.certified_key_for("api.openai.com").unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(ca.leaves.cached(), 4); // api.openai.com, 127.0.0.1, ::1, api.anthropic.com
}

#[tokio::test]
async fn a_reloaded_ca_issues_leaves_the_first_one_vouches_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, _) = Authority::load_or_create(tmp.path()).unwrap();
    let (second, created) = Authority::load_or_create(tmp.path()).unwrap();
    assert!(!created);
    let alpn = handshake(
        second.server_config(),
        client(trusting(&first), &[]),
        "api.anthropic.com",
    )
    .await;
    assert_eq!(alpn.unwrap(), None);
}

#[test]
fn the_leaf_cache_is_bounded_and_evicts_the_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = Authority::load_or_create(tmp.path()).unwrap();
    let key = KeyPair::from_pem(&std::fs::read_to_string(tmp.path().join("ca-key.pem")).unwrap())
        .unwrap();
    let issuer = Issuer::from_ca_cert_der(ca.cert_der(), key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let leaves = Leaves::new(issuer, provider, 3);
    let get = |h: &str| leaves.get(&LeafName::parse(h).unwrap()).unwrap();

    let a = get("a.example");
    get("b.example");
    get("c.example");
    assert!(Arc::ptr_eq(&a, &get("a.example"))); // a is now the most recent
    get("d.example"); // evicts b, the least recently used
    assert_eq!(leaves.cached(), 3);
    assert!(Arc::ptr_eq(&a, &get("a.example")));
    let c = get("c.example");
    assert!(Arc::ptr_eq(&c, &get("c.example")));
    get("b.example"); // b comes back as a new leaf, evicting d
    assert_eq!(leaves.cached(), 3);
    for i in 0..10 {
        get(&format!("host{i}.example"));
    }
    assert_eq!(leaves.cached(), 3);
}

#[test]
fn hosts_that_cannot_be_certified_are_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = Authority::load_or_create(tmp.path()).unwrap();
    let err = ca.server_config_for("api.openai.com:443").unwrap_err();
    assert!(matches!(err, CaError::InvalidHost { .. }), "{err}");
    assert!(err.to_string().contains("without its port"), "{err}");
}

#[test]
fn the_trust_anchor_needs_the_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = Authority::load_or_create(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
    let anchor = TrustAnchor::load(dir.path()).unwrap();
    assert_eq!(anchor.pem(), ca.cert_pem());
    assert_eq!(anchor.fingerprint_sha256(), ca.fingerprint_sha256());
    assert_eq!(anchor.path(), ca.cert_path());
    assert!(anchor.bundle().unwrap().pem.contains(ca.cert_pem().trim()));
    let empty = tempfile::tempdir().unwrap();
    assert!(TrustAnchor::load(empty.path()).is_err());
}
