//! Flags every recording command shares (`proxy`, `check-config`, `mcp`):
//! where the journal is, how it is written, and whose work is recorded.

use std::path::PathBuf;

use clap::Args;

use crate::config::Overrides;
use crate::config::identity::IdentityFlags;

/// Each flag is also read from the `SIDETRACE_*` variable named in its help.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// TOML config file (routes, upstream, capture, journal, execution sections).
    #[arg(long, env = "SIDETRACE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Journal file [default: $XDG_DATA_HOME/sidetrace/journal.db].
    #[arg(long, env = "SIDETRACE_JOURNAL", value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Largest body kept in the record; larger bodies are forwarded whole and
    /// recorded by prefix and digest [default: 32MiB].
    #[arg(long, env = "SIDETRACE_CAPTURE_MAX_BODY", value_name = "SIZE")]
    pub capture_max_body: Option<String>,

    /// Execution id for requests without a Sidetrace-Execution-Id header
    /// [default: one is created per proxy run].
    #[arg(long, env = "SIDETRACE_EXECUTION_ID", value_name = "ID")]
    pub execution_id: Option<String>,

    /// The human sponsor of this run's work, set by the operator (assurance "static").
    #[arg(long, env = "SIDETRACE_SPONSOR", value_name = "WHO")]
    pub sponsor: Option<String>,

    /// A file holding the sponsor (e.g. written by the Kubernetes downward API from an annotation).
    #[arg(long, env = "SIDETRACE_SPONSOR_FILE", value_name = "FILE")]
    pub sponsor_file: Option<PathBuf>,

    /// A file holding the sponsor's OIDC token (e.g. a projected service-account token or a CI
    /// id_token); re-read when it changes. Verified against the trusted issuers (assurance "oidc").
    #[arg(long, env = "SIDETRACE_SPONSOR_TOKEN_FILE", value_name = "FILE")]
    pub sponsor_token_file: Option<PathBuf>,

    /// The least sponsor a request needs: "none", "any" or "oidc"; requests below it are
    /// refused with a 403 [default: any].
    #[arg(long, env = "SIDETRACE_SPONSOR_REQUIRE", value_name = "LEVEL")]
    pub sponsor_require: Option<String>,

    /// A trusted OIDC issuer, exactly as its tokens' iss says (repeatable; keys from its
    /// /.well-known/openid-configuration). Needs --oidc-audience.
    #[arg(
        long = "oidc-issuer",
        env = "SIDETRACE_OIDC_ISSUER",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub oidc_issuers: Vec<String>,

    /// The audience sponsor tokens from --oidc-issuer must be minted for.
    #[arg(long, env = "SIDETRACE_OIDC_AUDIENCE", value_name = "AUD")]
    pub oidc_audience: Option<String>,

    /// The change (merge/pull request) id, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_CHANGE_ID", value_name = "ID")]
    pub change_id: Option<String>,

    /// The repository URL, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_REPOSITORY", value_name = "URL")]
    pub repository: Option<String>,

    /// The source branch, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_BRANCH", value_name = "NAME")]
    pub branch: Option<String>,

    /// The head revision (commit), when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_REVISION", value_name = "SHA")]
    pub revision: Option<String>,

    /// The CI pipeline run id, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_PIPELINE_RUN_ID", value_name = "ID")]
    pub pipeline_run_id: Option<String>,

    /// The CI pipeline run URL, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_PIPELINE_URL", value_name = "URL")]
    pub pipeline_url: Option<String>,

    /// The CI job id, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_JOB_ID", value_name = "ID")]
    pub job_id: Option<String>,

    /// "batched" (group commit off the request path) or "write-ahead" (each
    /// request is fsynced to the journal before it goes upstream) [default: batched].
    #[arg(long, env = "SIDETRACE_DURABILITY", value_name = "MODE")]
    pub durability: Option<String>,

    /// Ed25519 key (PKCS#8 PEM) that signs journal checkpoints; created 0600
    /// if missing [default: signing-key.pem beside the journal].
    #[arg(long, env = "SIDETRACE_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    /// Largest the journal file may grow; past it, writes fail as on a full disk.
    #[arg(long, env = "SIDETRACE_JOURNAL_MAX_SIZE", value_name = "SIZE")]
    pub journal_max_size: Option<String>,
}

impl RecordArgs {
    /// These flags as configuration overrides; `allow_header` is the proxy's.
    pub fn overrides(&self, allow_header_sponsor: bool) -> Overrides {
        Overrides {
            journal: self.journal.clone(),
            capture_max_body: self.capture_max_body.clone(),
            execution_id: self.execution_id.clone(),
            durability: self.durability.clone(),
            signing_key: self.signing_key.clone(),
            journal_max_size: self.journal_max_size.clone(),
            identity: IdentityFlags {
                sponsor: self.sponsor.clone(),
                sponsor_file: self.sponsor_file.clone(),
                sponsor_token_file: self.sponsor_token_file.clone(),
                require: self.sponsor_require.clone(),
                allow_header: allow_header_sponsor,
                oidc_issuers: self.oidc_issuers.clone(),
                oidc_audience: self.oidc_audience.clone(),
                change_id: self.change_id.clone(),
                repository: self.repository.clone(),
                branch: self.branch.clone(),
                revision: self.revision.clone(),
                pipeline_run_id: self.pipeline_run_id.clone(),
                pipeline_url: self.pipeline_url.clone(),
                job_id: self.job_id.clone(),
            },
            ..Default::default()
        }
    }
}
