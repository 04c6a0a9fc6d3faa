//! `sidetrace ca init | cert | bundle`: the local certificate authority that
//! HTTPS_PROXY mode uses to intercept TLS, and the files agents need to trust it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::ca::{Authority, TrustAnchor};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA if it does not exist yet; print where it is and its
    /// SHA-256 fingerprint (also when it already existed).
    Init(CaDirArgs),
    /// Print the CA certificate (PEM) to stdout, creating the CA if needed.
    ///
    /// For tools that add a CA to the roots they already trust:
    /// `NODE_EXTRA_CA_CERTS` (Node-based agents), or a system trust store.
    Cert(CaDirArgs),
    /// Write one PEM bundle: the system's trusted roots plus the CA.
    ///
    /// For tools that take a single bundle in place of the system roots:
    /// `SSL_CERT_FILE` (OpenSSL, Go, Rust), `REQUESTS_CA_BUNDLE` (Python
    /// requests), `CURL_CA_BUNDLE` (curl). Hosts sidetrace does not
    /// intercept keep working, since the system roots are in it. Reads the
    /// system roots where rustls-native-certs finds them (honouring
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`); fails if there are none.
    Bundle(BundleArgs),
}

#[derive(Debug, Args)]
pub struct CaDirArgs {
    /// Directory holding the CA's ca-key.pem (0600) and ca-cert.pem
    /// [default: $XDG_DATA_HOME/sidetrace/ca].
    #[arg(long, env = "SIDETRACE_CA_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(flatten)]
    pub dir: CaDirArgs,
    /// Write the bundle to FILE (mode 0644, replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(command: CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init(a) => init(a),
        CaCommand::Cert(a) => cert(a),
        CaCommand::Bundle(a) => bundle(a),
    }
}

fn open(args: &CaDirArgs) -> anyhow::Result<(Authority, bool)> {
    let dir = args.ca_dir.clone().unwrap_or_else(Authority::default_dir);
    Ok(Authority::load_or_create(&dir)?)
}

/// On stderr, so stdout stays the PEM.
fn note_created(ca: &Authority) {
    eprintln!(
        "sidetrace: created a new CA in {} (SHA-256 {})",
        ca.dir().display(),
        ca.fingerprint_sha256()
    );
}

fn init(args: CaDirArgs) -> anyhow::Result<ExitCode> {
    let (ca, created) = open(&args)?;
    let what = if created {
        "created the sidetrace CA"
    } else {
        "the sidetrace CA already exists"
    };
    println!("{what} in {}", ca.dir().display());
    println!("  certificate: {}", ca.cert_path().display());
    println!("  SHA-256 fingerprint: {}", ca.fingerprint_sha256());
    println!(
        "Agents trust it through NODE_EXTRA_CA_CERTS={} or a bundle from `sidetrace ca bundle --out FILE` \
(SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). Its key stays in that directory: anyone who \
can read it can impersonate any site to whoever trusts this CA.",
        ca.cert_path().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The CA's certificate, creating the CA only when there is none: an
/// existing CA's key is not read (it may be out of this process's reach).
fn trust_anchor(args: &CaDirArgs) -> anyhow::Result<TrustAnchor> {
    let dir = args.ca_dir.clone().unwrap_or_else(Authority::default_dir);
    if !dir.join(crate::ca::CERT_FILE).exists() {
        let (ca, created) = open(args)?;
        if created {
            note_created(&ca);
        }
    }
    Ok(TrustAnchor::load(&dir)?)
}

fn cert(args: CaDirArgs) -> anyhow::Result<ExitCode> {
    let ca = trust_anchor(&args)?;
    write_stdout(ca.pem())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn bundle(args: BundleArgs) -> anyhow::Result<ExitCode> {
    let ca = trust_anchor(&args.dir)?;
    let bundle = ca.bundle()?;
    if !bundle.unreadable.is_empty() {
        eprintln!(
            "sidetrace: skipped {} unreadable system certificate source(s): {}",
            bundle.unreadable.len(),
            bundle.unreadable.join("; ")
        );
    }
    let summary = format!(
        "{} system roots + the sidetrace CA (SHA-256 {})",
        bundle.system_roots,
        ca.fingerprint_sha256()
    );
    match &args.out {
        Some(path) => {
            bundle.write_to(path)?;
            eprintln!("sidetrace: wrote {}: {summary}", path.display());
        }
        None => {
            write_stdout(&bundle.pem)?;
            eprintln!("sidetrace: bundle: {summary}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
