//! Mutual TLS on node and console links (`CLUSTER_TLS_*`), with rustls through
//! ractor_cluster's own encryption support (`IncomingEncryptionMode::Tls`, `client_connect_enc`).
//!
//! Every link is authenticated both ways by the cluster's CA: a node accepts a connection only
//! from a peer presenting a certificate that chains to the CA (rustls's
//! `WebPkiClientVerifier`), and dials only peers whose certificate chains to it. The cookie
//! handshake runs on top, inside the encrypted stream.
//!
//! **No host name verification**, as Pekko Artery's default `hostname-verification = off`:
//! node names are usually IPs that change with every container, so a node certificate cannot
//! name them. [`CaOnlyServerVerifier`] checks the chain (validity dates, key usage, signatures)
//! with rustls's own WebPKI function and skips only the name check; any certificate the
//! cluster's CA signed is a cluster member. Use a CA for this cluster alone.
//!
//! Only the aws-lc-rs provider, which ractor_cluster's tokio-rustls already brings, is used.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why the TLS material cannot be used; each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain file.
    #[error("{0}")]
    Cert(String),
    /// The private key file (or it does not match the certificate).
    #[error("{0}")]
    Key(String),
    /// The CA file.
    #[error("{0}")]
    Ca(String),
}

/// The PEM contents of the three files.
#[derive(Debug, Clone, Copy)]
pub struct TlsPem<'a> {
    /// This node's certificate, optionally followed by intermediates.
    pub cert: &'a [u8],
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: &'a [u8],
    /// The cluster's CA certificate(s).
    pub ca: &'a [u8],
}

/// The TLS settings of one node or console: an acceptor for incoming links and a connector for
/// outgoing ones, both requiring the peer to present a certificate signed by the cluster CA.
#[derive(Clone)]
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterTls(mutual, cluster CA)")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl ClusterTls {
    /// Builds both sides from PEM contents.
    pub fn from_pem(pem: TlsPem<'_>) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(pem.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Cert(format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(TlsError::Cert(
                "no `-----BEGIN CERTIFICATE-----` block in the file".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(pem.key)
            .map_err(|e| TlsError::Key(format!("no PEM private key in the file: {e}")))?;
        let cas = CertificateDer::pem_slice_iter(pem.ca)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Ca(format!("not a PEM certificate file: {e}")))?;
        if cas.is_empty() {
            return Err(TlsError::Ca(
                "no `-----BEGIN CERTIFICATE-----` block in the file".into(),
            ));
        }
        let mut roots = RootCertStore::empty();
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| TlsError::Ca(format!("not a usable CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let provider = provider();

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Ca(format!("cannot verify peers with it: {e}")))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Cert(e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(key_error)?;

        let server_verifier = CaOnlyServerVerifier {
            roots,
            algorithms: provider.signature_verification_algorithms,
        };
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Cert(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(server_verifier))
            .with_client_auth_cert(certs, key)
            .map_err(key_error)?;

        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The server side, for the NodeServer's listener.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The client side, for dialling.
    pub fn connector(&self) -> TlsConnector {
        self.connector.clone()
    }

    /// The name a peer at `ip` is dialled under. It is not checked (see the module docs); an
    /// IP address also means no SNI is sent.
    pub fn server_name(ip: std::net::IpAddr) -> ServerName<'static> {
        ServerName::IpAddress(ip.into())
    }
}

fn key_error(e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::Key("the private key does not match the certificate".into())
        }
        other => TlsError::Key(format!(
            "not a usable private key for the certificate: {other}"
        )),
    }
}

/// Verifies that the server's certificate chains to the cluster CA and is valid now, and
/// nothing about its names (see the module docs).
#[derive(Debug)]
struct CaOnlyServerVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CaOnlyServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Dials `addr` for `server`: over TLS when `tls` is set, else plain TCP. The error is for a
/// log line or an operator: a failed TLS handshake says so and why (e.g. `invalid peer
/// certificate: UnknownIssuer` for a peer of another CA).
pub(crate) async fn dial(
    server: &ractor::ActorRef<ractor_cluster::NodeServerMessage>,
    addr: std::net::SocketAddr,
    tls: Option<&ClusterTls>,
) -> Result<(), String> {
    use ractor_cluster::ClientConnectErr;
    let result = match tls {
        None => ractor_cluster::client_connect(server, addr).await,
        Some(t) => {
            let name = ClusterTls::server_name(addr.ip());
            ractor_cluster::client_connect_enc(server, addr, t.connector(), name).await
        }
    };
    result.map_err(|e| match e {
        ClientConnectErr::Socket(e) => e.to_string(),
        ClientConnectErr::Encryption(e) => format!("TLS handshake failed: {e}"),
        ClientConnectErr::Messaging(e) => format!("the cluster endpoint is gone: {e}"),
    })
}
