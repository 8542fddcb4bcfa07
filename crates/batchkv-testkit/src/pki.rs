//! Certificates for the TLS tests, generated at run time (rcgen): a CA, a server certificate
//! for `127.0.0.1` and `localhost` signed by it, a client certificate signed by it, and a
//! client certificate signed by another CA the server does not trust. Every file is PEM, written
//! to a directory of the caller's (etcd's `--cert-file`, `--key-file`, `--trusted-ca-file`,
//! etcdctl's `--cacert`, `--cert`, `--key`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its private key, as PEM text and as files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    /// Where the certificate is.
    pub cert: PathBuf,
    /// Where the key is.
    pub key: PathBuf,
}

/// The test PKI (see the module's doc).
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The trusted CA's certificate (PEM) and its file.
    pub ca_pem: String,
    /// The trusted CA's certificate file.
    pub ca: PathBuf,
    /// The server's certificate: SANs `127.0.0.1`, `::1` and `localhost`, signed by the CA.
    pub server: CertFiles,
    /// A client certificate signed by the CA.
    pub client: CertFiles,
    /// A client certificate signed by another CA (not trusted by the server).
    pub untrusted_client: CertFiles,
    /// The other CA's certificate file.
    pub untrusted_ca: PathBuf,
}

impl TestPki {
    /// Generates the certificates and writes them into `dir`.
    ///
    /// # Panics
    /// If a certificate cannot be generated or a file cannot be written.
    pub fn generate(dir: &Path) -> TestPki {
        let (ca_params, ca_key, ca_pem) = ca("batchkv test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let (other_params, other_key, other_pem) = ca("batchkv untrusted CA");
        let other = Issuer::new(other_params, other_key);
        let ca = write(dir, "ca.pem", &ca_pem);
        let untrusted_ca = write(dir, "untrusted-ca.pem", &other_pem);
        TestPki {
            ca_pem,
            ca,
            server: leaf(
                dir,
                "server",
                &["127.0.0.1", "::1", "localhost"],
                ExtendedKeyUsagePurpose::ServerAuth,
                &issuer,
            ),
            client: leaf(
                dir,
                "client",
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
                &issuer,
            ),
            untrusted_client: leaf(
                dir,
                "untrusted-client",
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
                &other,
            ),
            untrusted_ca,
        }
    }
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("generate a CA key");
    let pem = params.self_signed(&key).expect("self-sign the CA").pem();
    (params, key, pem)
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> CertFiles {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).expect("certificate parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("batchkv test {name}"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("generate a key");
    let cert_pem = params
        .signed_by(&key, issuer)
        .expect("sign the certificate")
        .pem();
    let key_pem = key.serialize_pem();
    CertFiles {
        cert: write(dir, &format!("{name}.pem"), &cert_pem),
        key: write(dir, &format!("{name}-key.pem"), &key_pem),
        cert_pem,
        key_pem,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
