//! Kubernetes without a cluster: the manifests of `docker/kubernetes` read as the kubelet and
//! cluster DNS would use them, and a pod's read-only root file system on this machine.
//!
//! [`Manifests::load`] reads the resources a kustomize base lists (the base has no patches or
//! generators, so they are what `kubectl kustomize` renders, less the image name). From them:
//! a pod's environment ([`Manifests::pod_env`]: downward API fields, Secret references and
//! `$(VAR)` expansion, as the kubelet does it), the headless Service and its named ports, and
//! the paths the pod may write ([`Manifests::writable_paths`]). [`srv_name`] and
//! [`pod_hostname`] spell names as Kubernetes DNS does. [`read_only_root`] runs a command as
//! `readOnlyRootFilesystem: true` does: every mount read-only, the writable paths a fresh
//! tmpfs each (an `emptyDir`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::Error;

/// The cluster domain Kubernetes DNS serves by default (kubelet `--cluster-domain`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The objects of a kustomize base.
#[derive(Debug, Clone)]
pub struct Manifests {
    docs: Vec<Value>,
}

/// The pod a [`Manifests::pod_env`] is for: what the downward API and Secrets give it.
#[derive(Debug, Clone)]
pub struct Pod {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `status.podIP`.
    pub ip: IpAddr,
    /// Secrets of the namespace: (secret name, key) -> value.
    pub secrets: HashMap<(String, String), String>,
}

/// A named port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `name`: the SRV record's service label.
    pub name: String,
    /// `protocol`, lowercase (`tcp`).
    pub protocol: String,
    /// `port`.
    pub port: u16,
}

/// A headless Service (`clusterIP: None`).
#[derive(Debug, Clone)]
pub struct HeadlessService {
    /// `metadata.name`.
    pub name: String,
    /// Its named ports.
    pub ports: Vec<ServicePort>,
    /// `publishNotReadyAddresses`.
    pub publish_not_ready: bool,
}

fn setup(what: impl Into<String>) -> Error {
    Error::Setup(what.into())
}

impl Manifests {
    /// Reads `dir/kustomization.yaml` and every file its `resources` lists.
    pub fn load(dir: &Path) -> Result<Manifests, Error> {
        let read = |file: &Path| -> Result<Vec<Value>, Error> {
            let text = std::fs::read_to_string(file)
                .map_err(|e| setup(format!("cannot read {}: {e}", file.display())))?;
            serde_yaml_ng::Deserializer::from_str(&text)
                .map(Value::deserialize)
                .filter(|d| !matches!(d, Ok(Value::Null)))
                .collect::<Result<Vec<Value>, _>>()
                .map_err(|e| setup(format!("{}: {e}", file.display())))
        };
        let kustomization = read(&dir.join("kustomization.yaml"))?;
        let resources = kustomization
            .first()
            .and_then(|k| k["resources"].as_array())
            .ok_or_else(|| setup(format!("{}: no resources", dir.display())))?;
        let mut docs = Vec::new();
        for r in resources {
            let file = r
                .as_str()
                .ok_or_else(|| setup(format!("{}: a resource is not a path", dir.display())))?;
            docs.extend(read(&dir.join(file))?);
        }
        Ok(Manifests { docs })
    }

    fn one(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<&Value, Error> {
        match self.docs.iter().filter(|d| pred(d)).collect::<Vec<_>>()[..] {
            [one] => Ok(one),
            ref found => Err(setup(format!("expected one {what}, found {}", found.len()))),
        }
    }

    /// The Deployment's one container.
    fn container(&self) -> Result<&Value, Error> {
        let deployment = self.one("Deployment", |d| d["kind"] == "Deployment")?;
        match deployment["spec"]["template"]["spec"]["containers"].as_array() {
            Some(c) if c.len() == 1 => Ok(&c[0]),
            _ => Err(setup("expected one container in the Deployment")),
        }
    }

    /// The environment the kubelet gives the Deployment's container in `pod`, in the order
    /// of the manifest: `fieldRef` from the pod, `secretKeyRef` from its Secrets (a missing one
    /// is an error, as the pod would not start), `$(NAME)` expanded from the variables defined
    /// before it (`$$` is `$`; an unknown name stays as written).
    pub fn pod_env(&self, pod: &Pod) -> Result<HashMap<String, String>, Error> {
        let container = self.container()?;
        if !container["envFrom"].is_null() {
            return Err(setup("envFrom is not supported here"));
        }
        let mut env = HashMap::new();
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"]
                .as_str()
                .ok_or_else(|| setup("an env entry without a name"))?;
            let value = if let Some(v) = e["value"].as_str() {
                expand(v, &env)
            } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "status.podIP" => pod.ip.to_string(),
                    "metadata.namespace" => pod.namespace.clone(),
                    "metadata.name" => pod.name.clone(),
                    other => return Err(setup(format!("{name}: fieldRef {other} not supported"))),
                }
            } else if let Some(secret) = e["valueFrom"]["secretKeyRef"].as_object() {
                let key = (
                    text(&secret["name"]).to_string(),
                    text(&secret["key"]).to_string(),
                );
                pod.secrets
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| setup(format!("{name}: no Secret {key:?}")))?
            } else {
                return Err(setup(format!(
                    "{name}: neither a value nor a supported valueFrom"
                )));
            };
            env.insert(name.to_string(), value);
        }
        Ok(env)
    }

    /// The one headless Service.
    pub fn headless_service(&self) -> Result<HeadlessService, Error> {
        let s = self.one("headless Service", |d| {
            d["kind"] == "Service" && d["spec"]["clusterIP"] == "None"
        })?;
        let ports = s["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(ServicePort {
                    name: p["name"].as_str()?.to_string(),
                    protocol: p["protocol"].as_str().unwrap_or("TCP").to_lowercase(),
                    port: u16::try_from(p["port"].as_u64()?).ok()?,
                })
            })
            .collect();
        Ok(HeadlessService {
            name: text(&s["metadata"]["name"]).to_string(),
            ports,
            publish_not_ready: s["spec"]["publishNotReadyAddresses"] == true,
        })
    }

    /// `terminationGracePeriodSeconds` of the Deployment's pods (Kubernetes' default 30 s when
    /// unset): how long the kubelet waits after the preStop hook begins before SIGKILL.
    pub fn termination_grace_period(&self) -> Result<std::time::Duration, Error> {
        let deployment = self.one("Deployment", |d| d["kind"] == "Deployment")?;
        let grace = &deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"];
        Ok(std::time::Duration::from_secs(grace.as_u64().unwrap_or(30)))
    }

    /// Where the container may write: the mount paths of its `emptyDir` volumes.
    pub fn writable_paths(&self) -> Result<Vec<PathBuf>, Error> {
        let container = self.container()?;
        let deployment = self.one("Deployment", |d| d["kind"] == "Deployment")?;
        let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array();
        let is_empty_dir = |name: &str| {
            volumes
                .into_iter()
                .flatten()
                .any(|v| v["name"] == name && v["emptyDir"].is_object())
        };
        Ok(container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| is_empty_dir(text(&m["name"])))
            .map(|m| PathBuf::from(text(&m["mountPath"])))
            .collect())
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `$(NAME)` references expanded as the kubelet does for `env[].value`.
fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('(')
            && let Some(end) = a.find(')')
            && let Some(v) = vars.get(&a[..end])
        {
            out.push_str(v);
            rest = &a[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The SRV name of `service`'s port `port` in `namespace`, as Kubernetes DNS serves it:
/// `_<port>._<protocol>.<service>.<namespace>.svc.cluster.local`.
pub fn srv_name(service: &str, port: &ServicePort, namespace: &str) -> String {
    format!(
        "_{}._{}.{service}.{namespace}.svc.{CLUSTER_DOMAIN}",
        port.name, port.protocol
    )
}

/// The name an SRV answer of a headless Service gives a pod without `hostname`/`subdomain`:
/// its IP with dashes (`10-244-1-5.<service>.<namespace>.svc.cluster.local`).
pub fn pod_hostname(ip: IpAddr, service: &str, namespace: &str) -> String {
    let dashed = ip.to_string().replace(['.', ':'], "-");
    format!("{dashed}.{service}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// A command prefix (for [`crate::node::NodeProcess::start_with`]) that runs the command in
/// a mount namespace of its own where every mount but `/proc`, `/sys` and `/dev` (which a
/// container has from the runtime) is read-only, and each of `writable` is a fresh tmpfs: the
/// file system a container with `readOnlyRootFilesystem: true` and those `emptyDir` mounts sees.
/// The command is `exec`ed (same process). Needs root (unshare, mount).
///
/// Checked before it is returned: under it, `/` and the directory of the running test refuse
/// a new file, and every writable path takes one.
pub fn read_only_root(writable: &[PathBuf]) -> Result<Vec<String>, Error> {
    let mut script = String::from(
        "set -e\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         while read -r _ _ _ _ mp _; do\n\
           case $mp in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac\n\
           mount -o remount,bind,ro \"$mp\"\n\
         done < /proc/self/mountinfo\n",
    );
    // The workspace (the binary, `rel/`) may live under a writable path (a checkout in
    // `/tmp`): a fresh tmpfs there would hide it. Such a directory is opened before the tmpfs
    // covers it, bound back on top of it through that descriptor (`--no-canonicalize`, or
    // mount resolves the path again, into the tmpfs) and made read-only, as the rest.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf);
    let exe_dir = std::env::current_exe()?.parent().map(Path::to_path_buf);
    let mut keep: Vec<PathBuf> = Vec::new();
    for k in [workspace, exe_dir].into_iter().flatten() {
        let hidden = writable.iter().any(|w| k.starts_with(w) && k != *w);
        let covered = keep.iter().any(|kept| k.starts_with(kept));
        if hidden && !covered {
            keep.push(k);
        }
    }
    let mut probe = String::from("set -e\n");
    for (i, k) in keep.iter().enumerate() {
        script.push_str(&format!("exec {}<{}\n", i + 3, quoted(k)?));
    }
    for dir in writable {
        let dir = quoted(dir)?;
        script.push_str(&format!(
            "mount -t tmpfs -o mode=1777,size=16m tmpfs {dir}\n"
        ));
        probe.push_str(&format!("touch {dir}/.probe\n"));
    }
    for (i, k) in keep.iter().enumerate() {
        let k = quoted(k)?;
        script.push_str(&format!(
            "mkdir -p {k}\n\
             mount --no-canonicalize --bind /proc/self/fd/{fd} {k}\n\
             mount -o remount,bind,ro {k}\n\
             exec {fd}<&-\n",
            fd = i + 3
        ));
    }
    script.push_str("exec \"$@\"\n");
    let prefix: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ]
    .map(String::from)
    .to_vec();

    let here = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    for dir in [PathBuf::from("/"), here] {
        let file = quoted(&dir.join(format!(".minotaur-probe-{}", std::process::id())))?;
        probe.push_str(&format!(
            "if touch {file} 2>/dev/null; then rm -f {file}; echo \"{file} is writable\" >&2; exit 1; fi\n"
        ));
    }
    let out = std::process::Command::new(&prefix[0])
        .args(&prefix[1..])
        .args(["sh", "-c", &probe])
        .output()?;
    if !out.status.success() {
        return Err(setup(format!(
            "the read-only root does not hold (needs root; CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(prefix)
}

/// `path` single-quoted for sh.
fn quoted(path: &Path) -> Result<String, Error> {
    match path.to_str() {
        Some(p) if !p.contains('\'') => Ok(format!("'{p}'")),
        _ => Err(setup(format!("path {} cannot be quoted", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_the_kubelet() {
        let vars = HashMap::from([("POD_IP".to_string(), "10.1.2.3".to_string())]);
        assert_eq!(expand("minotaur@$(POD_IP)", &vars), "minotaur@10.1.2.3");
        assert_eq!(expand("$$(POD_IP) $(NOPE) $", &vars), "$(POD_IP) $(NOPE) $");
        assert_eq!(expand("$(POD_IP", &vars), "$(POD_IP");
    }

    #[test]
    fn dns_names_as_kubernetes_spells_them() {
        let port = ServicePort {
            name: "cluster".into(),
            protocol: "tcp".into(),
            port: 9000,
        };
        assert_eq!(
            srv_name("minotaur-headless", &port, "games"),
            "_cluster._tcp.minotaur-headless.games.svc.cluster.local"
        );
        let ip: IpAddr = [10, 244, 1, 5].into();
        assert_eq!(
            pod_hostname(ip, "minotaur-headless", "games"),
            "10-244-1-5.minotaur-headless.games.svc.cluster.local"
        );
    }
}
