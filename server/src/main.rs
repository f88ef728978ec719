//! `escape-server`: create a deployment and run it.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use escape_proto::{Attributes, Member};
use escape_server::config::{Config, DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use escape_server::deployment::{self, InitOptions, Layout};
use escape_server::registry::Registry;
use escape_server::store::{SledStore, Store};

/// The Escape server: a mutual-TLS collaboration platform for vetted experts.
///
/// With no command it serves the deployment in ./escape-data, creating it first if needed.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of readable text.
    #[arg(long, global = true, env = "ESCAPE_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a deployment: CA, server certificate, store, and the first admin's profile.
    Init {
        #[arg(long, env = "ESCAPE_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
        /// A DNS name or IP address clients use to reach the server (repeatable).
        #[arg(long = "host", default_values_t = [String::from("localhost"), String::from("127.0.0.1")])]
        hosts: Vec<String>,
        /// The deployment's name, shown in its CA certificate.
        #[arg(long, default_value = "Escape")]
        name: String,
        /// The address written into profiles; also becomes the listen address.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
    /// Serve a deployment (created on first start when the data dir is empty).
    Serve {
        #[arg(long, env = "ESCAPE_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
        /// Overrides the listen address of the data dir's escape.toml.
        #[arg(long, env = "ESCAPE_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Register a member and write its profile (while the server is stopped).
    AddMember {
        #[arg(long, env = "ESCAPE_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
        /// Display name; also the profile's file name.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        organisation: String,
        #[arg(long, default_value = "")]
        country: String,
        #[arg(long, default_value = "")]
        sector: String,
        #[arg(long, default_value = "analyst")]
        role: String,
        #[arg(long, default_value_t = 0)]
        clearance: u8,
        /// Make the member a deployment admin.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain and every signed checkpoint (while the server is stopped);
    /// exits 1 and names the first bad entry if anything was changed, removed or reordered.
    Verify {
        #[arg(long, env = "ESCAPE_DATA", default_value = DEFAULT_DATA_DIR)]
        data: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let command = cli.command.unwrap_or(Command::Serve {
        data: PathBuf::from(DEFAULT_DATA_DIR),
        listen: None,
    });
    match command {
        Command::Init {
            data,
            hosts,
            name,
            listen,
        } => {
            init(&data, &hosts, &name, listen)?;
            Ok(())
        }
        Command::Serve { data, listen } => serve(&data, listen),
        Command::Audit(AuditCommand::Verify { data }) => {
            let layout = Layout::new(&data);
            if !layout.is_initialised() {
                bail!("{} holds no deployment", data.display());
            }
            let store = SledStore::open(&layout.store())
                .context("cannot open the store; stop the server first")?;
            let cert = layout.read(&layout.server_cert())?;
            match escape_server::audit::verify(&store, &cert)? {
                escape_server::audit::Finding::Intact {
                    entries,
                    checkpoints,
                } => {
                    println!(
                        "audit log intact: {entries} entries, {checkpoints} signed checkpoints"
                    );
                    Ok(())
                }
                escape_server::audit::Finding::Broken { seq, reason } => {
                    eprintln!("audit log BROKEN at entry {seq}: {reason}");
                    std::process::exit(1);
                }
            }
        }
        Command::AddMember {
            data,
            name,
            organisation,
            country,
            sector,
            role,
            clearance,
            admin,
        } => {
            let layout = Layout::new(&data);
            let ca = layout.ca()?;
            let store = std::sync::Arc::new(
                SledStore::open(&layout.store())
                    .context("cannot open the store; stop the server first")?,
            );
            let mut member = Member::new(deployment::new_member_id(), name.clone());
            member.admin = admin;
            member.attributes = Attributes {
                organisation,
                country: country.to_uppercase(),
                sector,
                role,
                clearance,
                vetting: "vetted".into(),
                clients: Vec::new(),
            };
            let path = deployment::add_member_with(
                &layout,
                &ca,
                &Registry::new(store.clone()),
                member.clone(),
                &name,
            )?;
            store.flush()?;
            println!("member {} ({}) registered", member.id, member.name);
            println!("profile: {}", path.display());
            println!("import it with: escape profile import {}", path.display());
            Ok(())
        }
    }
}

fn init(data: &Path, hosts: &[String], name: &str, listen: SocketAddr) -> anyhow::Result<()> {
    // A wildcard listen address is no address to connect to: profiles name the first host.
    let public_address = if listen.ip().is_unspecified() {
        let host = hosts.first().map(String::as_str).unwrap_or("localhost");
        match host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{host}]:{}", listen.port()),
            Err(_) => format!("{host}:{}", listen.port()),
        }
    } else {
        listen.to_string()
    };
    let options = InitOptions {
        name: name.to_owned(),
        hosts: hosts.to_vec(),
        public_address,
    };
    let done = deployment::init(data, &options)?;
    if listen.to_string() != DEFAULT_LISTEN {
        std::fs::write(
            data.join(escape_server::config::CONFIG_FILE),
            format!("listen = \"{listen}\"\n"),
        )?;
    }
    println!("deployment created in {}", data.display());
    println!("admin profile: {}", done.admin_profile.display());
    println!(
        "import it with: escape profile import {}",
        done.admin_profile.display()
    );
    Ok(())
}

fn serve(data: &Path, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let layout = Layout::new(data);
    if !layout.is_initialised() {
        if data.exists() && std::fs::read_dir(data)?.next().is_some() {
            bail!(
                "{} is not empty but holds no deployment; point --data at an empty or initialised dir",
                data.display()
            );
        }
        tracing::info!(data = %data.display(), "no deployment yet; creating one");
        let listen = listen.unwrap_or(DEFAULT_LISTEN.parse()?);
        init(
            data,
            &["localhost".into(), "127.0.0.1".into()],
            "Escape",
            listen,
        )?;
    }
    let config = Config::load(data, listen)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = escape_server::start(config).await?;
        println!(
            "escape-server listening on {} (mutual TLS)",
            server.local_addr()
        );
        println!(
            "admin profile: {}",
            layout.profiles().join("admin.escape-profile").display()
        );
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            token.cancel();
        });
        server.stopped().await;
        anyhow::Ok(())
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
