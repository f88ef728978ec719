//! `escape-server`: create a deployment and run it.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::{Parser, Subcommand};
use escape_proto::{Attributes, Member};
use escape_server::config::{Config, DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use escape_server::deployment::{self, DeploymentError, InitBy, InitOptions, Layout};
use escape_server::registry::Registry;
use escape_server::seal::{self, MasterKey, MasterKeyOptions};
use escape_server::store::Store;

/// Every frame and every store write allocates and frees small buffers, on every thread. Under a
/// stream of durable messages the system allocator took about a fifth of the server's time; this
/// one keeps free lists per thread. It is built not to ask the kernel for transparent huge
/// pages: when it did, its arenas held about 50 MiB more resident memory at idle, for no
/// measurable speed. The `hardened-allocator` feature turns on its secure mode.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Where a deployment lives: its data dir and, outside it, the master key that opens its store.
#[derive(Debug, Clone, clap::Args)]
struct Deployment {
    #[arg(long, env = "ESCAPE_DATA", default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
    /// The master key file (default: beside the data dir, `<data>.master-key`). If it is
    /// protected by a passphrase, set ESCAPE_MASTER_PASSPHRASE; if that variable is set when
    /// the key is created, the key file is protected with it.
    #[arg(long, env = "ESCAPE_MASTER_KEY")]
    master_key: Option<PathBuf>,
}

impl Deployment {
    fn embedded() -> Self {
        Self {
            data: PathBuf::from(DEFAULT_DATA_DIR),
            master_key: None,
        }
    }

    fn master_key(&self) -> MasterKeyOptions {
        MasterKeyOptions::from_env(
            self.master_key
                .clone()
                .unwrap_or_else(|| seal::default_master_key_path(&self.data)),
        )
    }

    /// Opens the sealed store of a stopped server.
    fn open_store(&self) -> anyhow::Result<(Arc<seal::SealedStore>, seal::MasterKey)> {
        let layout = Layout::new(&self.data);
        if !layout.is_initialised() {
            bail!("{} holds no deployment", self.data.display());
        }
        seal::open_deployment(&self.data, &layout.store(), &self.master_key()).map_err(
            |e| match e {
                seal::SealError::Store(_) => anyhow::anyhow!(
                    "cannot open the store ({e}); is the server running? stop it first \
                     (to rotate the master key while it serves: escape admin keys rotate)"
                ),
                other => other.into(),
            },
        )
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a deployment: CA, server certificate, store, and the first admin's profile.
    Init {
        #[command(flatten)]
        deployment: Deployment,
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
        #[command(flatten)]
        deployment: Deployment,
        /// Overrides the listen address of the data dir's escape.toml.
        #[arg(long, env = "ESCAPE_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The master key that seals the store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Register a member and write its profile (while the server is stopped).
    AddMember {
        #[command(flatten)]
        deployment: Deployment,
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
        #[command(flatten)]
        deployment: Deployment,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Replace the master key: every data key is re-wrapped to a new one and the key file is
    /// replaced. With the server stopped this works on the data dir; while it runs, rotate
    /// through it instead with `escape admin keys rotate` (no downtime).
    Rotate {
        #[command(flatten)]
        deployment: Deployment,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let command = match cli.command {
        Some(command) => command,
        // No subcommand: `serve` with its defaults, read as `serve` reads them, so that
        // ESCAPE_DATA, ESCAPE_LISTEN and ESCAPE_MASTER_KEY apply to the embedded default too.
        None => match Cli::try_parse_from(["escape-server", "serve"]) {
            Ok(Cli {
                command: Some(command),
                ..
            }) => command,
            _ => Command::Serve {
                deployment: Deployment::embedded(),
                listen: None,
            },
        },
    };
    match command {
        Command::Init {
            deployment,
            hosts,
            name,
            listen,
        } => init(&deployment, &hosts, &name, listen, InitBy::Operator),
        Command::Serve { deployment, listen } => serve(&deployment, listen),
        Command::Audit(AuditCommand::Verify { deployment }) => {
            let (store, _) = deployment.open_store()?;
            let layout = Layout::new(&deployment.data);
            let cert = layout.read(&layout.server_cert())?;
            match escape_server::audit::verify(store.as_ref(), &cert)? {
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
        Command::Keys(KeysCommand::Rotate { deployment }) => {
            let (store, master) = deployment.open_store()?;
            let sealing = seal::Sealing::new(store, master);
            let rotated = sealing.rotate()?;
            println!(
                "master key rotated: {} data keys re-wrapped to {}",
                rotated.data_keys, rotated.recipient
            );
            println!(
                "key file: {} (the old key no longer opens this data dir)",
                deployment.master_key().path.display()
            );
            Ok(())
        }
        Command::AddMember {
            deployment,
            name,
            organisation,
            country,
            sector,
            role,
            clearance,
            admin,
        } => {
            let (store, _) = deployment.open_store()?;
            let layout = Layout::new(&deployment.data);
            let ca = layout.ca()?;
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

fn init(
    target: &Deployment,
    hosts: &[String],
    name: &str,
    listen: SocketAddr,
    by: InitBy,
) -> anyhow::Result<()> {
    let data = target.data.as_path();
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
    let key_options = target.master_key();
    // Checked before the master key is made, so that a refused dir gets nothing beside it.
    match Layout::new(data).check_ready_for_init()? {
        Some(InitBy::Operator) if by == InitBy::FirstStart => {
            return Err(DeploymentError::InitCutOff(data.to_owned()).into());
        }
        Some(earlier) => println!(
            "an earlier {} was cut off before the deployment was complete; starting over",
            earlier.label()
        ),
        None => {}
    }
    // Keep what the operator wrote before the first start; add the address unless it is set.
    // Read before anything is created, so that an unreadable file stops init with nothing done.
    let settings = data.join(escape_server::config::CONFIG_FILE);
    let with_listen = if listen.to_string() != DEFAULT_LISTEN {
        let existing = match std::fs::read_to_string(&settings) {
            Ok(existing) => existing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => bail!("reading {}: {e}", settings.display()),
        };
        (!existing
            .lines()
            .any(|l| l.trim_start().starts_with("listen")))
        .then(|| format!("listen = \"{listen}\"\n{existing}"))
    } else {
        None
    };
    let options = InitOptions {
        name: name.to_owned(),
        hosts: hosts.to_vec(),
        public_address,
        settings: with_listen,
        by,
    };
    std::fs::create_dir_all(data)?;
    seal::check_outside(data, &key_options.path)?;
    let (master, created) = MasterKey::load_or_create(&key_options)?;
    let done = deployment::init(data, &options, &master)?;
    println!("deployment created in {}", data.display());
    if created {
        println!(
            "master key created at {}{}: it opens the sealed store; keep it (and its backups) apart from the data dir",
            key_options.path.display(),
            if master.is_protected() {
                " (protected by ESCAPE_MASTER_PASSPHRASE)"
            } else {
                ""
            }
        );
    } else {
        println!(
            "store sealed with the existing master key {}: keep it (and its backups) apart from the data dir",
            key_options.path.display()
        );
    }
    println!("admin profile: {}", done.admin_profile.display());
    println!(
        "import it with: escape profile import {}",
        done.admin_profile.display()
    );
    Ok(())
}

fn serve(target: &Deployment, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let data = target.data.as_path();
    let layout = Layout::new(data);
    if !layout.is_initialised() {
        tracing::info!(data = %data.display(), "no deployment yet; creating one");
        let listen = listen.unwrap_or(DEFAULT_LISTEN.parse()?);
        init(
            target,
            &["localhost".into(), "127.0.0.1".into()],
            "Escape",
            listen,
            InitBy::FirstStart,
        )?;
    }
    let mut config = Config::load(data, listen)?;
    config.master_key = target.master_key();
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
        println!(
            "master key: {} (outside the data dir; the store is sealed with it)",
            target.master_key().path.display()
        );
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            token.cancel();
        });
        let store_failed = server.store_failed();
        server.stopped().await;
        if store_failed.is_cancelled() {
            anyhow::bail!(
                "stopped because the store failed to write to disk: start it again, from what the disk holds; senders retry what was not acknowledged"
            );
        }
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
