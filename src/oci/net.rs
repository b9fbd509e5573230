//! How kiln's HTTP gets through corporate networks: proxies and a CA bundle, both explicit.
//!
//! reqwest would read the proxy variables by itself (its "system proxy"), but silently and with
//! its own rules; kiln turns that off and configures the same variables itself, so what it does
//! is written here and tested:
//! - `HTTPS_PROXY` (else `https_proxy`, else `ALL_PROXY`/`all_proxy`) for `https://` endpoints:
//!   kiln opens a `CONNECT` tunnel through it, TLS runs end to end inside;
//! - `HTTP_PROXY` (else `http_proxy`, else `ALL_PROXY`/`all_proxy`) for `http://` endpoints (an
//!   emulator, a local gateway): requests go to the proxy in absolute form;
//! - `NO_PROXY` (else `no_proxy`): comma-separated hosts, domains (`.example.com` or
//!   `example.com` match subdomains too), IP addresses or CIDR blocks, or `*`, reached directly.
//!   The instance metadata service (169.254.169.254) is always reached directly.
//! - A proxy URL may carry `user:password@` (basic auth); kiln never prints it.
//!
//! A CA bundle (`OCI_DEFAULT_CERTS_PATH`, as Oracle's Go SDK and Terraform provider name it, else
//! `[provider] ca_bundle`) is a PEM file of one or more certificates that *replace* the built-in
//! roots, as `OCI_DEFAULT_CERTS_PATH` and `REQUESTS_CA_BUNDLE` do in Oracle's tools: behind a
//! TLS-inspecting proxy or in a realm with its own CA, those are the roots to trust.

use std::path::{Path, PathBuf};

/// The largest CA bundle kiln reads (a system bundle of ~150 roots is about 220 KB).
pub const CA_BUNDLE_LIMIT: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NetError {
    #[error("cannot read the CA bundle `{path}` (from {origin}): {source}")]
    #[diagnostic(code(kiln::oci::ca_bundle))]
    CaBundleUnreadable {
        path: PathBuf,
        origin: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA bundle `{path}` (from {origin}) holds no PEM certificate{reason}")]
    #[diagnostic(
        code(kiln::oci::ca_bundle),
        help("it must hold `-----BEGIN CERTIFICATE-----` blocks")
    )]
    CaBundleInvalid {
        path: PathBuf,
        origin: &'static str,
        reason: String,
    },
    #[error("`{var}` is not a proxy URL")]
    #[diagnostic(
        code(kiln::oci::proxy),
        help("use `http://HOST:PORT` (or `http://USER:PASSWORD@HOST:PORT`)")
    )]
    Proxy { var: &'static str },
}

/// A proxy from the environment (the URL is kept private: it may hold a password).
#[derive(Clone)]
struct ProxyVar {
    var: &'static str,
    url: String,
}

impl std::fmt::Debug for ProxyVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${}", self.var)
    }
}

/// A CA bundle: where it came from and its certificates.
#[derive(Clone)]
pub struct CaBundle {
    pub path: PathBuf,
    certificates: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CaBundle({}, {} certificates)",
            self.path.display(),
            self.certificates.len()
        )
    }
}

/// Proxies and trusted roots for every client kiln builds.
#[derive(Clone, Debug, Default)]
pub struct Network {
    https_proxy: Option<ProxyVar>,
    http_proxy: Option<ProxyVar>,
    no_proxy: Option<String>,
    pub ca_bundle: Option<CaBundle>,
}

fn first(
    env: &dyn Fn(&str) -> Option<String>,
    vars: &[&'static str],
) -> Option<(&'static str, String)> {
    vars.iter().find_map(|v| {
        env(v)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .map(|s| (*v, s))
    })
}

impl Network {
    /// The proxy variables of `env`, and the CA bundle of `OCI_DEFAULT_CERTS_PATH`, else
    /// `ca_bundle` (the manifest's, already resolved against the manifest directory).
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        ca_bundle: Option<&Path>,
    ) -> Result<Network, NetError> {
        let proxy = |vars: &[&'static str]| -> Result<Option<ProxyVar>, NetError> {
            match first(env, vars) {
                None => Ok(None),
                Some((var, url)) => {
                    // A bare `host:port` is taken as `http://host:port`, as curl does.
                    let url = if url.contains("://") {
                        url
                    } else {
                        format!("http://{url}")
                    };
                    reqwest::Proxy::all(&url).map_err(|_| NetError::Proxy { var })?;
                    Ok(Some(ProxyVar { var, url }))
                }
            }
        };
        let bundle = match first(env, &["OCI_DEFAULT_CERTS_PATH"]) {
            Some((_, p)) => Some(CaBundle::load(Path::new(&p), "OCI_DEFAULT_CERTS_PATH")?),
            None => match ca_bundle {
                Some(p) => Some(CaBundle::load(p, "[provider] ca_bundle")?),
                None => None,
            },
        };
        Ok(Network {
            https_proxy: proxy(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])?,
            http_proxy: proxy(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])?,
            no_proxy: first(env, &["NO_PROXY", "no_proxy"]).map(|(_, v)| v),
            ca_bundle: bundle,
        })
    }

    /// Which proxy variables are in force, for `-v` (names only, never the URLs).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.https_proxy {
            parts.push(format!("https via ${}", p.var));
        }
        if let Some(p) = &self.http_proxy {
            parts.push(format!("http via ${}", p.var));
        }
        if self.no_proxy.is_some() && !parts.is_empty() {
            parts.push("except $NO_PROXY".into());
        }
        if let Some(b) = &self.ca_bundle {
            parts.push(format!("roots from {}", b.path.display()));
        }
        if parts.is_empty() {
            "direct".into()
        } else {
            parts.join(", ")
        }
    }

    /// Configure `builder`: no implicit system proxy, the proxies above, the CA bundle.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let mut b = builder.no_proxy();
        let no_proxy = || {
            self.no_proxy
                .as_deref()
                .and_then(reqwest::NoProxy::from_string)
        };
        if let Some(p) = &self.https_proxy {
            if let Ok(proxy) = reqwest::Proxy::https(&p.url) {
                b = b.proxy(proxy.no_proxy(no_proxy()));
            }
        }
        if let Some(p) = &self.http_proxy {
            if let Ok(proxy) = reqwest::Proxy::http(&p.url) {
                b = b.proxy(proxy.no_proxy(no_proxy()));
            }
        }
        if let Some(bundle) = &self.ca_bundle {
            b = b.tls_built_in_root_certs(false);
            for c in &bundle.certificates {
                b = b.add_root_certificate(c.clone());
            }
        }
        b
    }
}

impl CaBundle {
    pub fn load(path: &Path, origin: &'static str) -> Result<CaBundle, NetError> {
        let bytes = crate::small_file::read(path, CA_BUNDLE_LIMIT).map_err(|e| {
            NetError::CaBundleUnreadable {
                path: path.to_path_buf(),
                origin,
                source: e.into(),
            }
        })?;
        let invalid = |reason: String| NetError::CaBundleInvalid {
            path: path.to_path_buf(),
            origin,
            reason,
        };
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
            return Err(invalid(String::new()));
        }
        let certificates =
            reqwest::Certificate::from_pem_bundle(&bytes).map_err(|e| invalid(format!(": {e}")))?;
        if certificates.is_empty() {
            return Err(invalid(String::new()));
        }
        Ok(CaBundle {
            path: path.to_path_buf(),
            certificates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn proxy_variables_and_their_precedence() {
        let n = Network::from_env(
            &env(&[
                ("HTTPS_PROXY", "http://proxy:3128"),
                ("https_proxy", "http://other:1"),
                ("http_proxy", "proxy:8080"),
                ("NO_PROXY", "localhost,.internal"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(n.https_proxy.as_ref().unwrap().var, "HTTPS_PROXY");
        assert_eq!(n.https_proxy.as_ref().unwrap().url, "http://proxy:3128");
        assert_eq!(n.http_proxy.as_ref().unwrap().url, "http://proxy:8080");
        assert_eq!(n.no_proxy.as_deref(), Some("localhost,.internal"));
        assert_eq!(
            n.describe(),
            "https via $HTTPS_PROXY, http via $http_proxy, except $NO_PROXY"
        );
        let all = Network::from_env(&env(&[("ALL_PROXY", "http://p:1")]), None).unwrap();
        assert_eq!(all.https_proxy.unwrap().var, "ALL_PROXY");
        assert_eq!(all.http_proxy.unwrap().var, "ALL_PROXY");
        let none = Network::from_env(&env(&[("HTTPS_PROXY", "  ")]), None).unwrap();
        assert_eq!(none.describe(), "direct");
        // The password of a proxy URL never shows.
        let secret =
            Network::from_env(&env(&[("HTTPS_PROXY", "http://u:hunter2@p:1")]), None).unwrap();
        assert!(!format!("{secret:?} {}", secret.describe()).contains("hunter2"));
    }

    #[test]
    fn ca_bundles_come_from_the_environment_before_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("x.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = Network::from_env(&env(&[]), Some(&not_pem))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "the CA bundle `{}` (from [provider] ca_bundle) holds no PEM certificate",
                not_pem.display()
            )
        );
        let e = Network::from_env(
            &env(&[("OCI_DEFAULT_CERTS_PATH", "/nonexistent/ca.pem")]),
            Some(&not_pem),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "cannot read the CA bundle `/nonexistent/ca.pem` (from OCI_DEFAULT_CERTS_PATH)"
            ),
            "{e}"
        );
    }
}
