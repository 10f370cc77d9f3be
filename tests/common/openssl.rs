//! The openssl CLI: runs, time-stamp queries, and a certificate authority made with it.
#![allow(unused_imports)]

use super::*;

/// Runs openssl; panics with its output on failure.
pub fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `openssl ts -query` for `data` (a file), returning the request DER.
pub fn ts_query(
    dir: &Path,
    data: &Path,
    hash: &str,
    nonce: bool,
    cert: bool,
    name: &str,
) -> PathBuf {
    let out = dir.join(format!("{name}.tsq"));
    let mut args = vec!["ts", "-query", "-data", data.to_str().unwrap(), hash];
    if !nonce {
        args.push("-no_nonce");
    }
    if cert {
        args.push("-cert");
    }
    args.extend(["-out", out.to_str().unwrap()]);
    openssl(&args);
    out
}

/// A certificate authority made with the openssl CLI (test-only keys in files): a root,
/// as an office's real CA would be, outside the appliance.
pub struct OpensslCa {
    pub dir: PathBuf,
}

impl OpensslCa {
    pub fn new(dir: &Path) -> OpensslCa {
        std::fs::create_dir_all(dir).unwrap();
        let ca = OpensslCa {
            dir: dir.to_owned(),
        };
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = d\n[d]\ndatabase = {db}\nserial = {serial}\nnew_certs_dir = {dir}\n\
                 default_md = sha256\npolicy = p\nunique_subject = no\ncopy_extensions = copy\n\
                 default_days = 365\n\
                 [p]\ncommonName = supplied\norganizationName = optional\ncountryName = optional\n\
                 [good]\nbasicConstraints = critical,CA:FALSE\nsubjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n\
                 [eku_noncritical]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = timeStamping\n\
                 [eku_extra]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = critical,timeStamping,codeSigning\n",
                db = dir.join("index.txt").display(),
                serial = dir.join("serial").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            ca.path("ca.key").to_str().unwrap(),
            "-out",
            ca.path("ca.pem").to_str().unwrap(),
            "-subj",
            "/CN=Audit Office Test Root CA/O=auditstamp tests",
            "-days",
            "3650",
        ]);
        ca
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn cert(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// Signs `csr` with the extension section `section`; `dates` = (start, end) as
    /// YYYYMMDDHHMMSSZ, or the default validity.
    pub fn sign(&self, csr: &Path, out: &Path, section: &str, dates: Option<(&str, &str)>) {
        let mut args = vec![
            "ca".to_string(),
            "-batch".into(),
            "-notext".into(),
            "-config".into(),
            self.path("ca.cnf").to_str().unwrap().into(),
            "-cert".into(),
            self.cert().to_str().unwrap().into(),
            "-keyfile".into(),
            self.path("ca.key").to_str().unwrap().into(),
            "-extensions".into(),
            section.into(),
            "-in".into(),
            csr.to_str().unwrap().into(),
            "-out".into(),
            out.to_str().unwrap().into(),
        ];
        if let Some((start, end)) = dates {
            args.extend([
                "-startdate".into(),
                start.into(),
                "-enddate".into(),
                end.into(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&args);
    }
}
