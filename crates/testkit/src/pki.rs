//! A throwaway PKI for TLS tests: a CA, a server certificate for `127.0.0.1` / `localhost` and a
//! client certificate, all signed by that CA (rcgen, ECDSA P-256), generated fresh per test.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM text of a test CA and the certificates it signed.
#[derive(Clone)]
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

/// Where [`TestPki::write`] put the files a client needs.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPki(..)")
    }
}

impl TestPki {
    /// A new CA named `name` with a server and a client certificate.
    pub fn generate(name: &str) -> TestPki {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("self-signed ca");
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let mut p = CertificateParams::new(sans).expect("leaf params");
            p.distinguished_name.push(DnType::CommonName, cn);
            p.use_authority_key_identifier_extension = true;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &issuer).expect("signed leaf");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "127.0.0.1",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert_pem, client_key_pem) = leaf(
            vec![],
            "scimflow-client",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
        }
    }

    /// Writes `ca.pem`, `client.pem` and `client.key` into `dir`.
    pub fn write(&self, dir: &Path) -> PkiFiles {
        let files = PkiFiles {
            ca: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&files.ca, &self.ca_pem).expect("write ca.pem");
        std::fs::write(&files.client_cert, &self.client_cert_pem).expect("write client.pem");
        std::fs::write(&files.client_key, &self.client_key_pem).expect("write client.key");
        files
    }

    /// The server side: its certificate, and this CA as the one client certificates must chain
    /// to (`require_client_cert`).
    pub fn server_tls(&self, require_client_cert: bool) -> crate::server::TlsOptions {
        crate::server::TlsOptions {
            cert_pem: self.server_cert_pem.clone(),
            key_pem: self.server_key_pem.clone(),
            client_ca_pem: require_client_cert.then(|| self.ca_pem.clone()),
        }
    }
}
