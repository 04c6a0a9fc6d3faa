//! Sponsors, verified: OIDC tokens checked against a local issuer's JWKS
//! (valid, forged, expired, wrong issuer or audience, alg none, garbage,
//! rotated keys), the `require` levels, static and header sponsors, token
//! files; correlation from claims and from GitLab/GitHub environments; and a
//! canary secret that reaches the upstream but not the journal, the spans
//! or the logs.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;
use sidetrace::record::{CompletionStatus, SponsorAssurance, digest_of};

use crate::common::oidc::{Issuer, SigningKey};
use crate::common::*;

fn anthropic_request() -> Vec<u8> {
    fixture("anthropic/request_tools.json")
}

async fn oidc_proxy(issuer: &Issuer, mock_url: &str, require: &str) -> TestProxy {
    let (iss, require) = (issuer.url(), require.to_owned());
    TestProxy::start(&[("/anthropic", mock_url)], move |o| {
        o.identity.require = Some(require);
        o.identity.allow_header = false;
        o.identity.oidc_issuers = vec![iss];
        o.identity.oidc_audience = Some("sidetrace".into());
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_token_makes_a_verified_sponsor_with_its_claims() {
    let key = SigningKey::es256("key-1");
    let issuer = Issuer::start(&[&key]).await;
    let mock = fixture_mock(None).await;
    let mut proxy = oidc_proxy(&issuer, &mock.url(), "oidc").await;
    let token = key.sign(&issuer.gitlab_claims("sidetrace"));
    let (status, _, _) = post(
        &proxy.url("/anthropic/v1/messages"),
        &[
            ("sidetrace-sponsor-token", &token),
            ("sidetrace-sponsor", "mallory"),
        ],
        anthropic_request(),
    )
    .await;
    assert_eq!(status, 200);
    let seen = &mock.requests()[0];
    assert!(
        seen.headers
            .keys()
            .all(|k| !k.as_str().starts_with("sidetrace")),
        "nothing of ours upstream"
    );
    assert!(!format!("{:?}", seen.headers).contains(&token[..40]));

    let it = only_interaction(&proxy.finish().await);
    let sponsor = it.sponsor.clone().unwrap();
    assert_eq!(
        sponsor.id, "alice",
        "from user_login, not the header's claim"
    );
    assert_eq!(sponsor.assurance, SponsorAssurance::Oidc as i32);
    let ev = sponsor.evidence.unwrap();
    assert_eq!(ev.issuer, issuer.url());
    assert_eq!(ev.key_id, "key-1");
    assert_eq!(ev.algorithm, "ES256");
    assert_eq!(ev.token_digest, digest_of(token.as_bytes()));
    assert_eq!(ev.sponsor_claim, "user_login");
    assert_eq!(ev.claims["pipeline_id"], "9001");
    assert_eq!(ev.claims["job_id"], "424242");
    assert!(ev.jwks_uri.ends_with("/oauth/discovery/keys"), "discovered");
    let c = it.correlation.unwrap();
    assert_eq!(c.repository_url, format!("{}/team/app", issuer.url()));
    assert_eq!(c.sources["repository_url"], "oidc claim project_path");
    assert_eq!(
        (
            c.revision.as_str(),
            c.pipeline_run_id.as_str(),
            c.job_id.as_str()
        ),
        ("3f786850e387550fdab836ed7e6dc881de23001b", "9001", "424242")
    );
    assert_eq!(
        c.vcs_provider, "",
        "a local issuer is neither GitLab nor GitHub by name"
    );
    // The token itself is nowhere in the journal.
    assert!(
        !journal_bytes(&proxy.journal)
            .windows(40)
            .any(|w| w == &token.as_bytes()[..40])
    );
}

fn journal_bytes(journal: &Path) -> Vec<u8> {
    let mut all = std::fs::read(journal).unwrap();
    for suffix in ["-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", journal.display())) {
            all.extend(b);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_are_refused_before_the_upstream() {
    let key = SigningKey::es256("key-1");
    let issuer = Issuer::start(&[&key]).await;
    let mock = fixture_mock(None).await;
    let mut proxy = oidc_proxy(&issuer, &mock.url(), "oidc").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = issuer.gitlab_claims("sidetrace");

    let forger = SigningKey::es256("key-1"); // same kid, other key
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    let mut other_issuer = claims.clone();
    other_issuer["iss"] = json!("https://gitlab.evil.example");
    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("someone-else");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    claims["user_login"] = json!("alice");

    let cases = [
        (
            "signed by another key",
            forger.sign(&claims),
            "InvalidSignature",
        ),
        ("expired", key.sign(&expired), "ExpiredSignature"),
        (
            "from an untrusted issuer",
            key.sign(&other_issuer),
            "not a trusted issuer",
        ),
        (
            "for another audience",
            key.sign(&other_audience),
            "InvalidAudience",
        ),
        ("alg none", alg_none, "not a JWT"),
        ("garbage", "not-a-jwt-at-all".to_owned(), "not a JWT"),
    ];
    for (what, token, reason) in &cases {
        let (status, headers, body) = post(
            &proxy.url("/anthropic/v1/messages"),
            &[("sidetrace-sponsor-token", token)],
            anthropic_request(),
        )
        .await;
        assert_eq!(status, 403, "{what}");
        assert_eq!(headers["sidetrace-error"], "sponsor_required");
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["error"]["type"], "permission_error", "{what}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("Sidetrace-Sponsor-Token") && message.contains(reason),
            "{what}: {message}"
        );
    }
    assert!(mock.requests().is_empty(), "the upstream saw nothing");
    let views = proxy.finish().await;
    let refused: Vec<_> = views.iter().flat_map(|v| &v.interactions).collect();
    assert_eq!(refused.len(), cases.len(), "every refusal is recorded");
    assert!(
        refused
            .iter()
            .all(|i| i.completion.as_ref().unwrap().status == CompletionStatus::Refused as i32)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_are_picked_up_and_rsa_works() {
    let old = SigningKey::rs256("gitlab-2025");
    let issuer = Issuer::start(&[&old]).await;
    let mock = fixture_mock(None).await;
    let mut proxy = oidc_proxy(&issuer, &mock.url(), "oidc").await;
    let claims = issuer.gitlab_claims("sidetrace");
    let (status, _, _) = post(
        &proxy.url("/anthropic/v1/messages"),
        &[("sidetrace-sponsor-token", &old.sign(&claims))],
        anthropic_request(),
    )
    .await;
    assert_eq!(status, 200, "RS256 from the discovered JWKS");

    let new = SigningKey::es256("gitlab-2026");
    issuer.publish(&[&old, &new]);
    let token = new.sign(&claims);
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let (status, _, _) = post(
            &proxy.url("/anthropic/v1/messages"),
            &[("sidetrace-sponsor-token", &token)],
            anthropic_request(),
        )
        .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 403);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new key was never picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let views = proxy.finish().await;
    let kids: Vec<String> = views
        .iter()
        .flat_map(|v| &v.interactions)
        .filter(|i| i.completion.as_ref().unwrap().status == CompletionStatus::Complete as i32)
        .map(|i| i.sponsor.clone().unwrap().evidence.unwrap().key_id)
        .collect();
    assert_eq!(kids, ["gitlab-2025", "gitlab-2026"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn require_levels_static_header_and_token_file_sponsors() {
    let mock = fixture_mock(None).await;
    // require = any (the default), nothing given: refused, saying how to fix it.
    let mut strict = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.identity.require = Some("any".into());
        o.identity.allow_header = false;
    })
    .await;
    let (status, _, body) = post(
        &strict.url("/anthropic/v1/messages"),
        &[("sidetrace-sponsor", "bob")],
        anthropic_request(),
    )
    .await;
    assert_eq!(
        status, 403,
        "a header sponsor does not count unless allowed"
    );
    let message = String::from_utf8_lossy(&body).into_owned();
    assert!(
        message.contains("--sponsor") && message.contains("sponsor.require"),
        "{message}"
    );
    strict.stop().await;

    let mut allowing = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.identity.require = Some("any".into());
        o.identity.allow_header = true;
    })
    .await;
    let (status, _, _) = post(
        &allowing.url("/anthropic/v1/messages"),
        &[("sidetrace-sponsor", "bob")],
        anthropic_request(),
    )
    .await;
    assert_eq!(status, 200);
    let it = only_interaction(&allowing.finish().await);
    assert_eq!(
        it.sponsor.unwrap().assurance,
        SponsorAssurance::Header as i32
    );

    // A static sponsor from a file (the downward-API pattern), re-read when it changes.
    let dir = tempfile::tempdir().unwrap();
    let sponsor_file = dir.path().join("sponsor");
    std::fs::write(&sponsor_file, "carol@example.com\n").unwrap();
    let path = sponsor_file.clone();
    let mut from_file = TestProxy::start(&[("/anthropic", &mock.url())], move |o| {
        o.identity.require = Some("any".into());
        o.identity.sponsor_file = Some(path);
    })
    .await;
    post(
        &from_file.url("/anthropic/v1/messages"),
        &[],
        anthropic_request(),
    )
    .await;
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&sponsor_file, "dave@example.com\n").unwrap();
    let mtime = SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&sponsor_file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    post(
        &from_file.url("/anthropic/v1/messages"),
        &[],
        anthropic_request(),
    )
    .await;
    let ids: Vec<String> = from_file.finish().await[0]
        .interactions
        .iter()
        .map(|i| i.sponsor.clone().unwrap().id)
        .collect();
    assert_eq!(ids, ["carol@example.com", "dave@example.com"]);

    // require = oidc with only a static sponsor: refused, saying what is missing.
    let key = SigningKey::es256("k");
    let issuer = Issuer::start(&[&key]).await;
    let iss = issuer.url();
    let mut oidc_only = TestProxy::start(&[("/anthropic", &mock.url())], move |o| {
        o.identity.require = Some("oidc".into());
        o.identity.sponsor = Some("ops".into());
        o.identity.oidc_issuers = vec![iss];
        o.identity.oidc_audience = Some("sidetrace".into());
    })
    .await;
    let (status, _, body) = post(
        &oidc_only.url("/anthropic/v1/messages"),
        &[],
        anthropic_request(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("only set by the operator"));
    oidc_only.stop().await;

    // A token file (projected token): verified, and the sponsor's assurance says oidc.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, key.sign(&issuer.gitlab_claims("sidetrace"))).unwrap();
    let (iss, tf) = (issuer.url(), token_file.clone());
    let mut with_token = TestProxy::start(&[("/anthropic", &mock.url())], move |o| {
        o.identity.require = Some("oidc".into());
        o.identity.sponsor_token_file = Some(tf);
        o.identity.oidc_issuers = vec![iss];
        o.identity.oidc_audience = Some("sidetrace".into());
    })
    .await;
    let (status, _, _) = post(
        &with_token.url("/anthropic/v1/messages"),
        &[],
        anthropic_request(),
    )
    .await;
    assert_eq!(status, 200);
    let it = only_interaction(&with_token.finish().await);
    let sponsor = it.sponsor.unwrap();
    assert_eq!(
        (sponsor.id.as_str(), sponsor.source.as_str()),
        ("alice", "file --sponsor-token-file")
    );
    assert_eq!(sponsor.assurance, SponsorAssurance::Oidc as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_secret_reaches_the_upstream_and_nowhere_else() {
    use crate::common::binary::RunningProxy;
    use crate::common::otlp::Receiver;
    use prost::Message as _;

    let api_key = "sk-proj-CANARYabcdefghijklmnopqrstuvwxyz0123456789";
    let in_prompt = "ghp_CANARY0123456789abcdefghijklmnopqrstuvwxyz";
    let mock = fixture_mock(None).await;
    let receiver = Receiver::http().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let route = format!("/openai={}", mock.url());
    let proxy = RunningProxy::start_with_env(
        &[
            "--route",
            &route,
            "--journal",
            journal.to_str().unwrap(),
            "--otlp-endpoint",
            &receiver.url(),
            "--export-content",
            "full",
            "--sponsor",
            "alice",
        ],
        &[("RUST_LOG", "debug")],
    )
    .await;
    let mut req: serde_json::Value =
        serde_json::from_slice(&fixture("openai_chat/request_tools.json")).unwrap();
    req["messages"][4]["content"] = json!(format!("use my token {in_prompt} to push"));
    let auth = format!("Bearer {api_key}");
    let (status, _, _) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[("authorization", &auth), ("x-api-key", api_key)],
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    proxy.terminate();
    let (code, log) = proxy.wait().await;
    assert_eq!(code, 0);

    // Forwarded unchanged: the upstream got both.
    let seen = &mock.requests()[0];
    assert_eq!(seen.headers["authorization"], auth.as_str());
    assert!(String::from_utf8_lossy(&seen.body).contains(in_prompt));
    // Recorded and exported without either.
    let stored = journal_bytes(&journal);
    let spans: Vec<u8> = receiver
        .requests()
        .iter()
        .flat_map(|r| r.encode_to_vec())
        .collect();
    assert!(!receiver.spans().is_empty());
    let logs = log.join("\n");
    for (place, bytes) in [
        ("journal", &stored),
        ("spans", &spans),
        ("logs", &logs.as_bytes().to_vec()),
    ] {
        for canary in [api_key, in_prompt, "CANARY"] {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{canary} leaked into the {place}"
            );
        }
    }
    let it = only_interaction(&read_journal(&journal));
    assert_eq!(
        it.redactions.get("github-token"),
        Some(&1),
        "{:?}",
        it.redactions
    );
    assert!(
        !it.agent.unwrap().credential_fingerprint.is_empty(),
        "the key is known by fingerprint only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ci_environments_give_correlation_marked_by_source() {
    use crate::common::binary::RunningProxy;

    let mock = fixture_mock(None).await;
    let gitlab: &[(&str, &str)] = &[
        ("GITLAB_CI", "true"),
        ("GITHUB_ACTIONS", ""),
        ("CI_MERGE_REQUEST_IID", "42"),
        ("CI_PROJECT_URL", "https://gitlab.example.com/team/app"),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "feature/x"),
        ("CI_COMMIT_SHA", "3f786850e387550fdab836ed7e6dc881de23001b"),
        ("CI_PIPELINE_ID", "9001"),
        (
            "CI_PIPELINE_URL",
            "https://gitlab.example.com/team/app/-/pipelines/9001",
        ),
        ("CI_JOB_ID", "424242"),
    ];
    let github: &[(&str, &str)] = &[
        ("GITLAB_CI", ""),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "acme/app"),
        ("GITHUB_REF", "refs/pull/17/merge"),
        ("GITHUB_HEAD_REF", "fix-bug"),
        ("GITHUB_SHA", "def4560000000000000000000000000000000000"),
        ("GITHUB_RUN_ID", "555"),
        ("GITHUB_JOB", "test"),
    ];
    for (ci, env, change, repo, source) in [
        (
            "gitlab",
            gitlab,
            "42",
            "https://gitlab.example.com/team/app",
            "env CI_MERGE_REQUEST_IID (unsigned)",
        ),
        (
            "github",
            github,
            "17",
            "https://github.com/acme/app",
            "env GITHUB_REF (unsigned)",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.db");
        let route = format!("/openai={}", mock.url());
        let proxy = RunningProxy::start_with_env(
            &[
                "--route",
                &route,
                "--journal",
                journal.to_str().unwrap(),
                "--sponsor",
                "ci-bot-owner",
                "--job-id",
                "from-flag",
            ],
            env,
        )
        .await;
        // The request's own baggage beats the environment for the branch.
        let (status, _, _) = post(
            &proxy.url("/openai/v1/chat/completions"),
            &[("baggage", "sidetrace.branch=from-baggage")],
            fixture("openai_chat/request_tools.json"),
        )
        .await;
        assert_eq!(status, 200);
        proxy.terminate();
        assert_eq!(proxy.wait().await.0, 0);
        let it = only_interaction(&read_journal(&journal));
        let c = it.correlation.unwrap();
        assert_eq!(
            (
                c.change_id.as_str(),
                c.repository_url.as_str(),
                c.vcs_provider.as_str()
            ),
            (change, repo, ci)
        );
        assert_eq!(c.sources["change_id"], source, "{ci}");
        assert_eq!(
            (c.ref_name.as_str(), c.sources["ref_name"].as_str()),
            ("from-baggage", "baggage sidetrace.branch")
        );
        assert_eq!(
            (c.job_id.as_str(), c.sources["job_id"].as_str()),
            ("from-flag", "config --job-id")
        );
        assert!(c.sources["revision"].ends_with("(unsigned)"));
        assert!(!c.pipeline_run_url.is_empty());
    }
}
