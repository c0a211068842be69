//! Signing keys: Ed25519 key pairs kept in `DATA_DIR/keys/<kid>.json`, mode 0600, in a folder of
//! mode 0700. The key id is the key's RFC 7638 JWK thumbprint, so the same key has the same id
//! everywhere and a verifier can compute it from the public key alone.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
#[cfg(test)]
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

/// An Ed25519 key pair that signs tokens.
pub(crate) struct SigningKey {
    kid: String,
    created: u64,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
    /// Kept parsed: making it from the PKCS#8 document costs as much as a signature.
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private half.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .finish()
    }
}

/// The key's file, as written to disk.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct KeyFile {
    kid: String,
    alg: String,
    /// Seconds since the epoch.
    created: u64,
    /// PKCS#8 document, standard base64.
    private_key: String,
    /// The raw public key, base64url (a JWK's `x`).
    public_key: String,
}

impl SigningKey {
    pub(crate) fn generate() -> anyhow::Result<SigningKey> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        SigningKey::from_pkcs8(pkcs8.as_ref().to_vec(), created)
    }

    fn from_pkcs8(pkcs8: Vec<u8>, created: u64) -> anyhow::Result<SigningKey> {
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| anyhow::anyhow!("not an Ed25519 PKCS#8 key"))?;
        let public = pair.public_key().as_ref().to_vec();
        Ok(SigningKey {
            kid: thumbprint(&public),
            created,
            pkcs8,
            public,
            pair,
        })
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn created(&self) -> u64 {
        self.created
    }

    /// The raw 32-byte public key.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), the form another server's
    /// `trusted-keys` setting reads.
    pub(crate) fn public_pem(&self) -> String {
        // The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), then the 32-byte key.
        const SPKI_PREFIX: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        let der = [&SPKI_PREFIX[..], &self.public].concat();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    #[cfg(test)]
    pub(crate) fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_ed_der(&self.pkcs8)
    }

    /// A compact JWS of `claims`: header `{"typ":"JWT","alg":"EdDSA","kid":…}`, signed with this
    /// key. (jsonwebtoken's `encode` parses the key again for every token, which costs as much
    /// as the signature itself.)
    pub(crate) fn sign_jwt(&self, claims: &impl Serialize) -> anyhow::Result<String> {
        #[derive(Serialize)]
        struct JwtHeader<'a> {
            typ: &'static str,
            alg: &'static str,
            kid: &'a str,
        }
        let header = JwtHeader {
            typ: "JWT",
            alg: "EdDSA",
            kid: &self.kid,
        };
        Ok(self.sign_parts(&serde_json::to_vec(&header)?, &serde_json::to_vec(claims)?))
    }

    /// A compact JWS of these header and payload bytes, as they are, signed with this key.
    pub(crate) fn sign_parts(&self, header: &[u8], payload: &[u8]) -> String {
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.pair.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        token
    }

    #[cfg(test)]
    pub(crate) fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(&self.public)
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: SHA-256 of its canonical JWK, base64url.
pub(super) fn thumbprint(public: &[u8]) -> String {
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwk.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The `keys/` folder of a data directory.
#[derive(Debug, Clone)]
pub(crate) struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    pub(crate) fn new(data_dir: &Path) -> KeyDir {
        KeyDir {
            dir: data_dir.join("keys"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Every key in the folder, newest first (the first one signs). A file that others can read
    /// or write is refused: a leaked signing key opens every gated ref.
    pub(crate) fn load_all(&self) -> anyhow::Result<Vec<SigningKey>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", self.dir.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "json") {
                keys.push(
                    read_key(&path).with_context(|| format!("signing key {}", path.display()))?,
                );
            }
        }
        keys.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.kid.cmp(&b.kid)));
        Ok(keys)
    }

    /// Makes a new key, which signs from now on (it is the newest). Returns it.
    pub(crate) fn add(&self) -> anyhow::Result<SigningKey> {
        let newest = self.load_all()?.first().map_or(0, SigningKey::created);
        let mut key = SigningKey::generate()?;
        // Newest by its creation time, even within the second the last one was made in.
        key.created = key.created.max(newest + 1);
        self.write(&key)?;
        Ok(key)
    }

    /// The signing key, made first if the folder has none. Returns it and whether it is new.
    pub(crate) fn ensure(&self) -> anyhow::Result<(SigningKey, bool)> {
        if let Some(key) = self.load_all()?.into_iter().next() {
            return Ok((key, false));
        }
        let key = SigningKey::generate()?;
        self.write(&key)?;
        Ok((key, true))
    }

    fn write(&self, key: &SigningKey) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let file = KeyFile {
            kid: key.kid.clone(),
            alg: "EdDSA".to_owned(),
            created: key.created,
            private_key: STANDARD.encode(&key.pkcs8),
            public_key: URL_SAFE_NO_PAD.encode(&key.public),
        };
        let path = self.dir.join(format!("{}.json", key.kid));
        let tmp = self.dir.join(format!(".{}.json.tmp", key.kid));
        // Created 0600 from the start, written whole, synced, then renamed into place: a crash
        // leaves either no key or a whole one, never a readable half.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let json = serde_json::to_vec_pretty(&file).context("encoding the key")?;
        out.write_all(&json)
            .and_then(|()| out.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("creating {}", path.display()))?;
        Ok(())
    }
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "its mode is {:o}; a signing key must be readable by its owner only: chmod 600 {}",
            mode & 0o777,
            path.display()
        );
    }
    let file: KeyFile =
        serde_json::from_slice(&std::fs::read(path)?).context("not a tollgate key file")?;
    if file.alg != "EdDSA" {
        bail!("algorithm {:?}; tollgate signs with EdDSA only", file.alg);
    }
    let pkcs8 = STANDARD
        .decode(&file.private_key)
        .context("the private key is not base64")?;
    let key = SigningKey::from_pkcs8(pkcs8, file.created)?;
    if key.kid != file.kid || URL_SAFE_NO_PAD.encode(&key.public) != file.public_key {
        bail!("the key id or public key does not match the private key; the file was altered");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_8037() {
        // RFC 8037, appendix A.3: the thumbprint of its example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn keys_are_written_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let (key, created) = keys.ensure().unwrap();
        assert!(created);
        let (again, created) = keys.ensure().unwrap();
        assert!(!created);
        assert_eq!(again.kid(), key.kid());
        assert_eq!(again.public_key(), key.public_key());
        let file = keys.path().join(format!("{}.json", key.kid()));
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(keys.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(!format!("{key:?}").contains(&STANDARD.encode(&key.pkcs8)[..20]));
        // The PEM form is what jsonwebtoken (and so `trusted-keys`) reads back.
        let decoded = DecodingKey::from_ed_pem(key.public_pem().as_bytes()).unwrap();
        assert_eq!(decoded.try_get_as_bytes().unwrap(), key.public_key());

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", keys.load_all().unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
    }
}
