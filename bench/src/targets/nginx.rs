//! nginx as the handshake peer: TLS with `ssl_verify_client on` against the peers' CA, no session
//! cache and no tickets (every handshake is a full one), and one empty answer per request.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use super::process::{self, Guard};
use crate::pki::PeerPki;

pub fn start(dir: &Path, pki: &PeerPki) -> anyhow::Result<(Guard, SocketAddr)> {
    std::fs::create_dir_all(dir.join("tmp"))?;
    let prefix = dir.to_str().context("path")?;
    let config = |port: u16| {
        format!(
            "worker_processes auto;\nuser root;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {prefix}/tmp;\n  proxy_temp_path {prefix}/tmp;\n\
               fastcgi_temp_path {prefix}/tmp;\n  uwsgi_temp_path {prefix}/tmp;\n  scgi_temp_path {prefix}/tmp;\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 ssl_client_certificate {ca};\n    ssl_verify_client on;\n    ssl_protocols TLSv1.2 TLSv1.3;\n\
                 ssl_session_cache off;\n    ssl_session_tickets off;\n    keepalive_timeout 0;\n\
                 location / {{ return 204; }}\n  }}\n}}\n",
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            ca = pki.ca.display(),
        )
    };
    process::Daemon {
        program: "nginx",
        name: "nginx",
        config: &config,
        args: &|conf| {
            ["-p", prefix, "-c", conf, "-g", "daemon off;"]
                .map(String::from)
                .to_vec()
        },
    }
    .start(dir)
}
