//! `sidetrace journal verify | export-key | prune`: the auditor's and the
//! operator's tools for the journal itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::config::{Overrides, ProxyConfig};
use crate::journal::{keys, prune, schema, verify};

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check the whole journal: every hash-chain link, blob digest and
    /// checkpoint signature. Exits 0 only if all hold; otherwise names the
    /// first bad entry and what is wrong with it.
    Verify(VerifyArgs),
    /// Print the public key that signs this journal's checkpoints (SPKI PEM), for auditors.
    ExportKey(KeyArgs),
    /// Remove whole executions older than the retention limit, and the blobs
    /// only they used; the pruning is recorded in the chain.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Journal file [default: $XDG_DATA_HOME/sidetrace/journal.db].
    #[arg(long, env = "SIDETRACE_JOURNAL", value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// Trusted public key(s) (SPKI PEM, from `journal export-key`); every
    /// checkpoint must be signed by one of them. Repeatable.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Journal file [default: $XDG_DATA_HOME/sidetrace/journal.db].
    #[arg(long, env = "SIDETRACE_JOURNAL", value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// The signing key file [default: signing-key.pem beside the journal].
    #[arg(long, env = "SIDETRACE_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Config file, for journal.path, journal.signing_key and journal.retention.
    #[arg(long, env = "SIDETRACE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Journal file [default: $XDG_DATA_HOME/sidetrace/journal.db].
    #[arg(long, env = "SIDETRACE_JOURNAL", value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// The key that signs the prune record [default: signing-key.pem beside the journal].
    #[arg(long, env = "SIDETRACE_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Keep executions active within this long, e.g. "400d" [default: journal.retention].
    #[arg(long, env = "SIDETRACE_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(command: JournalCommand) -> anyhow::Result<ExitCode> {
    match command {
        JournalCommand::Verify(a) => verify_cmd(a),
        JournalCommand::ExportKey(a) => export_key(a),
        JournalCommand::Prune(a) => prune_cmd(a),
    }
}

fn verify_cmd(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let path = args.journal.unwrap_or_else(crate::journal::default_path);
    let trusted = args
        .public_keys
        .iter()
        .map(|p| keys::read_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    match verify::verify(&path, &trusted)? {
        Ok(r) => {
            println!("journal {} ({}): verified", r.journal_id, path.display());
            let tail = if r.unsigned_tail > 0 {
                format!(
                    " ({} entries after it are chained but not yet signed)",
                    r.unsigned_tail
                )
            } else {
                String::new()
            };
            println!(
                "  entries      {} ({} pruned), {} checkpoints, last at entry {}{tail}",
                r.entries + r.pruned_entries,
                r.pruned_entries,
                r.checkpoints,
                r.last_checkpoint_seq
            );
            println!(
                "  blobs        {} referenced, all present and intact",
                r.blobs_checked
            );
            let signers = if r.signers.is_empty() {
                "-".to_owned()
            } else {
                r.signers.join(", ")
            };
            let anchor = if r.anchored {
                "checked against the given --public-key"
            } else {
                "not anchored: pass --public-key to check against a key you trust"
            };
            println!("  signed by    key {signers} ({anchor})");
            for (seq, reason) in &r.chain_breaks {
                println!("  chain break  entry {seq}: {reason}");
            }
            for (seq, lost) in &r.gaps {
                println!("  gap          entry {seq}: {lost} records could not be written");
            }
            if r.prunes > 0 {
                println!("  pruned       {} times by retention", r.prunes);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            eprintln!(
                "journal {}: verification FAILED at {failure}",
                path.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn export_key(args: KeyArgs) -> anyhow::Result<ExitCode> {
    let journal = args.journal.unwrap_or_else(crate::journal::default_path);
    let key_path = args
        .signing_key
        .unwrap_or_else(|| keys::default_path(&journal));
    let public = if key_path.exists() {
        keys::load(&key_path)?.verifying_key()
    } else {
        // No key file here (e.g. an auditor's copy of the journal): use the recorded one.
        let conn = schema::open_for_reading(&journal)?;
        let hex_key = schema::get_meta(&conn, "public_key")
            .with_context(|| format!("reading {}", journal.display()))?
            .with_context(|| {
                format!(
                    "no signing key at {} and none recorded in {}",
                    key_path.display(),
                    journal.display()
                )
            })?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&hex_key, &mut bytes).context("the recorded public key is damaged")?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .context("the recorded public key is invalid")?
    };
    print!("{}", keys::public_pem(&public));
    eprintln!("key id {}", keys::key_id(&public));
    Ok(ExitCode::SUCCESS)
}

fn prune_cmd(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let config = ProxyConfig::load(
        args.config.as_deref(),
        Overrides {
            journal: args.journal,
            signing_key: args.signing_key,
            retention: args.retention,
            ..Default::default()
        },
    )?;
    let Some(retention) = config.retention else {
        eprintln!(
            "no retention limit: pass --retention (e.g. 400d) or set journal.retention in the config"
        );
        return Ok(ExitCode::from(2));
    };
    let key = keys::load(&config.journal.signing_key)?;
    let r = prune::prune(
        &config.journal.path,
        &key,
        retention.duration,
        &retention.text,
        args.dry_run,
    )?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let cutoff = r
        .cutoff
        .map(|c| humantime::format_rfc3339_seconds(c).to_string())
        .unwrap_or_default();
    println!(
        "{verb} {} executions last active before {cutoff} (retention {}): {} entries, {} blobs ({} bytes)",
        r.executions.len(),
        retention.text,
        r.entries,
        r.blobs,
        r.blob_bytes
    );
    for id in &r.executions {
        println!("  {id}");
    }
    Ok(ExitCode::SUCCESS)
}
