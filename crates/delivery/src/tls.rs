//! A target's TLS material: the client certificate presented for mTLS and the private CA its
//! server certificate is verified against. Server verification is always on; there is no way to
//! turn it off.
//!
//! * SCIM requests: with `tls.ca`, the server certificate must chain to that CA — and only to it
//!   (the built-in roots are off); without it, to the built-in web PKI roots (webpki-roots).
//! * Token requests (`auth.type: oauth2`): the built-in roots plus `tls.ca`, since the token
//!   endpoint is often a public identity provider; no client certificate is presented there.
//!
//! The files are read once, when the client is built (at start): a renewed certificate takes
//! effect after a restart.

use scimflow_config::{SecretError, SecretRef, TargetTls};

use rustls_pki_types::pem::{PemObject, SectionKind};

/// Why a target's HTTP client could not be built. Names files and settings, never key material.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{field}: {reason}")]
    Material { field: &'static str, reason: String },
    #[error("{0}")]
    Http(String),
}

/// The PEM material of `tls`, read and checked.
#[derive(Clone, Default)]
pub struct TlsMaterial {
    identity: Option<reqwest::Identity>,
    ca: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("client_certificate", &self.identity.is_some())
            .field("ca_certificates", &self.ca.len())
            .finish()
    }
}

fn read(field: &'static str, r: &SecretRef) -> Result<String, BuildError> {
    r.resolve()
        .map(|s| s.expose().to_owned())
        .map_err(|e| BuildError::Material {
            field,
            reason: match e {
                SecretError::EnvMissing(r) => format!("{r} is not set"),
                SecretError::File { reference, reason } => {
                    format!("{reference} cannot be read: {reason}")
                }
                SecretError::Empty(r) => format!("{r} is empty"),
            },
        })
}

/// The PEM sections of `text` by kind (certificates, private keys, other).
fn sections(field: &'static str, r: &SecretRef, text: &str) -> Result<(usize, usize), BuildError> {
    let (mut certs, mut keys) = (0, 0);
    for s in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        match s {
            Ok((SectionKind::Certificate, _)) => certs += 1,
            Ok((
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey,
                _,
            )) => keys += 1,
            Ok(_) => {}
            Err(e) => {
                return Err(BuildError::Material {
                    field,
                    reason: format!("{r} is not valid PEM ({e})"),
                })
            }
        }
    }
    Ok((certs, keys))
}

impl TlsMaterial {
    /// Reads and checks the files of `tls`.
    pub fn load(tls: &TargetTls) -> Result<Self, BuildError> {
        let mut out = TlsMaterial::default();
        if let Some(c) = &tls.client {
            let cert = read("tls.client_cert", &c.cert)?;
            let key = read("tls.client_key", &c.key)?;
            let bad = |field, reason: String| BuildError::Material { field, reason };
            match sections("tls.client_cert", &c.cert, &cert)? {
                (0, _) => {
                    return Err(bad(
                        "tls.client_cert",
                        format!("{} holds no CERTIFICATE block", c.cert),
                    ))
                }
                (_, 0) => {}
                _ => {
                    return Err(bad(
                        "tls.client_cert",
                        format!(
                            "{} holds a private key; keep the key in tls.client_key",
                            c.cert
                        ),
                    ))
                }
            }
            match sections("tls.client_key", &c.key, &key)? {
                (_, 1) => {}
                (_, 0) => {
                    return Err(bad(
                        "tls.client_key",
                        format!(
                            "{} holds no private key (PKCS#8, PKCS#1 or SEC1 PEM; encrypted keys are not supported)",
                            c.key
                        ),
                    ))
                }
                (_, n) => {
                    return Err(bad(
                        "tls.client_key",
                        format!("{} holds {n} private keys; expected one", c.key),
                    ))
                }
            }
            let identity = reqwest::Identity::from_pem(format!("{key}\n{cert}\n").as_bytes())
                .map_err(|e| bad("tls.client_cert", crate::client::describe(&e)))?;
            // rustls checks here that the key belongs to the certificate.
            reqwest::Client::builder()
                .identity(identity.clone())
                .build()
                .map_err(|e| {
                    bad(
                        "tls.client_cert",
                        format!(
                            "{} and tls.client_key {} are not a usable pair: {}",
                            c.cert,
                            c.key,
                            crate::client::describe(&e)
                        ),
                    )
                })?;
            out.identity = Some(identity);
        }
        if let Some(r) = &tls.ca {
            let pem = read("tls.ca", r)?;
            if sections("tls.ca", r, &pem)?.0 == 0 {
                return Err(BuildError::Material {
                    field: "tls.ca",
                    reason: format!("{r} holds no CERTIFICATE block"),
                });
            }
            out.ca = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
                BuildError::Material {
                    field: "tls.ca",
                    reason: format!("{r}: {}", crate::client::describe(&e)),
                }
            })?;
        }
        Ok(out)
    }

    /// Whether a client certificate is presented.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    /// The SCIM client: the client certificate, and `ca` as the only trust anchors when set.
    pub fn scim(&self, mut b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if let Some(id) = &self.identity {
            b = b.identity(id.clone());
        }
        if !self.ca.is_empty() {
            b = b.tls_built_in_root_certs(false);
            for c in &self.ca {
                b = b.add_root_certificate(c.clone());
            }
        }
        b
    }

    /// The token endpoint's client: the built-in roots plus `ca`.
    pub fn token(&self, mut b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for c in &self.ca {
            b = b.add_root_certificate(c.clone());
        }
        b
    }
}

/// A hint for a TLS failure seen in a transport error's text, naming the setting to check.
pub fn hint(error_text: &str) -> Option<&'static str> {
    let t = error_text;
    if t.contains("CertificateRequired") || t.contains("certificate required") {
        Some("the target requires a client certificate: set tls.client_cert and tls.client_key")
    } else if t.contains("UnknownIssuer") || t.contains("unknown issuer") {
        Some("the target's certificate is not signed by a trusted CA: set tls.ca to the CA that signs it")
    } else if t.contains("BadCertificate")
        || t.contains("UnknownCA")
        || t.contains("AccessDenied")
        || t.contains("DecryptError")
    {
        Some("the target refused the client certificate: check tls.client_cert and tls.client_key")
    } else if t.contains("NotValidForName") || t.contains("not valid for name") {
        Some("the target's certificate does not name the host of base_url")
    } else if t.contains("Expired") {
        Some("a certificate has expired")
    } else {
        None
    }
}
