//! `sidetrace check-config`: validate everything `sidetrace proxy` would use,
//! list every problem at once, and print the effective settings.

use std::process::ExitCode;

use super::proxy::ProxyArgs;

pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let c = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    println!("configuration is valid");
    println!("listen           = {}", c.listen);
    println!("admin            = {}", c.admin);
    for r in &c.routes {
        println!(
            "route            = {} -> {} (protocol {:?})",
            r.prefix, r.upstream, r.protocol
        );
    }
    if let Some(ca) = &c.upstream_ca {
        println!("upstream.ca_file = {}", ca.display());
    }
    println!(
        "upstream.timeout = {}",
        humantime::format_duration(c.upstream_timeout)
    );
    println!(
        "connect_timeout  = {}",
        humantime::format_duration(c.connect_timeout)
    );
    println!(
        "drain_timeout    = {}",
        humantime::format_duration(c.drain_timeout)
    );
    println!("capture.max_body = {} bytes", c.capture_max_body);
    println!("journal.path     = {}", c.journal_path.display());
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    println!(
        "execution.id     = {}",
        c.execution
            .execution_id
            .clone()
            .unwrap_or_else(|| "(one per proxy run)".into())
    );
    println!("execution.sponsor   = {}", opt(&c.execution.sponsor));
    println!("execution.change_id = {}", opt(&c.execution.change_id));
    Ok(ExitCode::SUCCESS)
}
