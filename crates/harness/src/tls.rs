//! Certificates for mutual TLS tests (`CLUSTER_TLS_*`), made with the `openssl` command line
//! exactly as the README tells operators to: a CA, and node certificates it signs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate authority in a directory: `ca.pem`, `ca.key`.
#[derive(Debug, Clone)]
pub struct Ca {
    dir: PathBuf,
}

/// One node's certificate and key, and the CA file it trusts.
#[derive(Debug, Clone)]
pub struct NodeCert {
    /// `CLUSTER_TLS_CERT_FILE`.
    pub cert: PathBuf,
    /// `CLUSTER_TLS_KEY_FILE`.
    pub key: PathBuf,
    /// `CLUSTER_TLS_CA_FILE`.
    pub ca: PathBuf,
}

impl NodeCert {
    /// Adds the three `CLUSTER_TLS_*` variables to `env`.
    pub fn apply(&self, env: &mut HashMap<String, String>) {
        for (var, path) in [
            ("CLUSTER_TLS_CERT_FILE", &self.cert),
            ("CLUSTER_TLS_KEY_FILE", &self.key),
            ("CLUSTER_TLS_CA_FILE", &self.ca),
        ] {
            env.insert(var.into(), path.display().to_string());
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (install the `openssl` package): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a node certificate says: not a CA, for both ends of a link, with the fixed name
/// `minotaur-node` (nodes do not check names; see `discovery::tls`).
const NODE_EXTENSIONS: &str = "basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:minotaur-node
";

impl Ca {
    /// A new CA (P-256, ten years) in `dir`, created if needed.
    pub fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "3650",
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        Ca {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate (`CLUSTER_TLS_CA_FILE`).
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A node certificate signed by this CA: `<name>.pem`, `<name>.key`.
    pub fn node(&self, name: &str) -> NodeCert {
        let ext = self.dir.join("node.ext");
        std::fs::write(&ext, NODE_EXTENSIONS).unwrap_or_else(|e| panic!("write {ext:?}: {e}"));
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "365",
                "-extfile",
                "node.ext",
                "-out",
                &cert,
            ],
        );
        NodeCert {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
            ca: self.cert(),
        }
    }
}
