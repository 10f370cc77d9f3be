//! `auditstamp listener`: where a configuration's listener answers on this host, for
//! health checks (the container's `deploy/healthcheck.sh`). Reads the configuration with
//! the same loader and environment overrides as `serve` and `witness serve`; opens no HSM
//! and no connection.
//!
//! Prints `key=value` lines: `scheme=http|https`, `address=IP:PORT` (a wildcard listen
//! address becomes the loopback address of its family), and for TLS `cert_file=PATH` (the
//! server certificate chain, resolved against the state directory).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::CliError;

/// What a health check needs to reach a listener from the same host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Where to connect: the listen address, loopback for a wildcard one.
    pub address: SocketAddr,
    /// The server certificate chain (PEM) when the listener serves TLS.
    pub cert_file: Option<std::path::PathBuf>,
}

impl Listener {
    /// The `key=value` lines `auditstamp listener` prints.
    pub fn lines(&self) -> String {
        match &self.cert_file {
            None => format!("scheme=http\naddress={}\n", self.address),
            Some(cert) => format!(
                "scheme=https\naddress={}\ncert_file={}\n",
                self.address,
                cert.display()
            ),
        }
    }
}

/// The listener of the appliance or witness configuration at `path`.
pub fn listener(path: &Path) -> Result<Listener, CliError> {
    let (listen, tls) = match crate::witness::config::load_any(path)? {
        crate::witness::config::AnyConfig::Appliance(c) => (c.listen, c.tls),
        crate::witness::config::AnyConfig::Witness(c) => (c.listen, c.tls),
    };
    if listen.port() == 0 {
        return Err(CliError::Other(format!(
            "{}: the listen address {listen} has port 0 (chosen when the server starts): \
             give the port in the file or in AUDITSTAMP_LISTEN",
            path.display()
        )));
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(Listener {
        address: SocketAddr::new(ip, listen.port()),
        cert_file: tls.map(|t| t.cert_file),
    })
}

/// Prints the listener of the configuration at `path`.
pub fn run(path: &Path) -> Result<(), CliError> {
    print!("{}", listener(path)?.lines());
    Ok(())
}
