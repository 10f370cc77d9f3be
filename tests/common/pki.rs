//! A test-only PKI made with openssl: server, agencies' and unknown CAs.
#![allow(unused_imports)]

use super::*;

/// Test-only PKI made with openssl: a server CA and a localhost certificate, an agencies'
/// CA and two agency client certificates, and a client certificate of an unknown CA.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let p = Pki {
            dir: dir.to_owned(),
        };
        p.ca("server-ca", "/CN=test server CA");
        p.ca("agencies-ca", "/CN=test agencies CA");
        p.ca("rogue-ca", "/CN=rogue CA");
        p.leaf(
            "server",
            "server-ca",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        );
        p.leaf(
            "agency-7",
            "agencies-ca",
            "/CN=agency-7/O=Tax Office 7",
            "extendedKeyUsage=clientAuth",
        );
        p.leaf(
            "agency-8",
            "agencies-ca",
            "/CN=agency-8",
            "extendedKeyUsage=clientAuth",
        );
        p.leaf(
            "rogue",
            "rogue-ca",
            "/CN=agency-7",
            "extendedKeyUsage=clientAuth",
        );
        p
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn ca(&self, name: &str, subject: &str) {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &self.path(&format!("{name}.key")),
            "-out",
            &self.path(&format!("{name}.pem")),
            "-subj",
            subject,
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    fn leaf(&self, name: &str, ca: &str, subject: &str, ext: &str) {
        let ext_file = self.path(&format!("{name}.ext"));
        std::fs::write(&ext_file, format!("basicConstraints=CA:FALSE\n{ext}\n")).unwrap();
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &self.path(&format!("{name}.key")),
            "-out",
            &self.path(&format!("{name}.csr")),
            "-subj",
            subject,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &self.path(&format!("{name}.csr")),
            "-CA",
            &self.path(&format!("{ca}.pem")),
            "-CAkey",
            &self.path(&format!("{ca}.key")),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &ext_file,
            "-out",
            &self.path(&format!("{name}.pem")),
        ]);
    }
}
