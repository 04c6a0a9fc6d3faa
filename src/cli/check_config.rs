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
    let j = &c.journal;
    println!("journal.path     = {}", j.path.display());
    println!(
        "journal.durability = {}",
        if j.durability == crate::journal::Durability::WriteAhead {
            "write-ahead"
        } else {
            "batched"
        }
    );
    println!("journal.signing_key = {}", j.signing_key.display());
    println!(
        "journal.checkpoint_every = {} entries, checkpoint_interval = {}",
        j.checkpoint_every,
        humantime::format_duration(j.checkpoint_interval)
    );
    if let Some(max) = j.max_size {
        println!("journal.max_size = {max} bytes");
    }
    if let Some(r) = &c.retention {
        println!("journal.retention = {}", r.text);
    }
    println!(
        "sessions.headers = {}",
        c.execution.session_headers.join(", ")
    );
    println!(
        "sessions.idle_timeout = {}",
        humantime::format_duration(c.session_idle_timeout)
    );
    println!("context rules    = {}", c.context_rules.len());
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    let id = &c.identity;
    println!(
        "execution.id     = {}",
        c.execution
            .execution_id
            .clone()
            .unwrap_or_else(|| "(one per proxy run)".into())
    );
    println!("sponsor.require  = {:?}", id.policy.require);
    println!("sponsor.static   = {}", opt(&id.policy.static_sponsor));
    println!("sponsor.allow_header = {}", id.policy.allow_header);
    for i in &id.issuers {
        println!(
            "sponsor.issuer   = {} (audience {})",
            i.issuer,
            i.audiences.join(", ")
        );
    }
    let mut fields: Vec<_> = id.configured.0.iter().collect();
    fields.sort();
    for (field, (value, source)) in fields {
        println!("correlation.{field} = {value} ({source})");
    }
    if let Some(p) = id.ci.provider {
        println!("ci environment   = {p}");
    }
    Ok(ExitCode::SUCCESS)
}
