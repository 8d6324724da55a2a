//! Keys and the sealed envelope every private object is stored in.
//!
//! A random 256-bit master key is made at `init`. It never leaves memory unwrapped: the key file
//! holds it sealed under a key derived from the passphrase with Argon2id. Two keys are derived from
//! it with BLAKE3's key derivation mode (distinct contexts, so neither reveals the other): one
//! names chunks (keyed BLAKE3 of the plaintext's SHA-256), one seals objects (XChaCha20-Poly1305).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::aead::{Aead, AeadInOut as _, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::format::ChunkRef;
use crate::{ChunkId, ChunkSha256};

/// The first bytes of every sealed object.
pub(crate) const ENVELOPE_MAGIC: &[u8; 4] = b"VMSB";
/// The envelope layout version (byte 4).
pub(crate) const ENVELOPE_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = ENVELOPE_MAGIC.len() + 1 + NONCE_LEN;
/// The Poly1305 tag that ends an envelope.
const TAG_LEN: usize = 16;
/// Where a plaintext opened with [`Keys::open_aligned`] starts: at a multiple of a page, what a
/// write around the page cache (`O_DIRECT`) asks of its memory.
pub(crate) const PLAINTEXT_ALIGN: usize = 4096;
/// Payload codec bytes (the first byte of an opened envelope).
const CODEC_NONE: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// zstd's default level: ~400 MB/s per core, which keeps a backup's CPU under the disk's speed.
const ZSTD_LEVEL: i32 = 3;

const CONTEXT_CHUNK_ID: &str = "vmsnap-backup v1 2026-12 chunk id key";
const CONTEXT_SEAL: &str = "vmsnap-backup v1 2026-12 object sealing key";

/// What a sealed object is; part of its associated data, so that an object cannot be passed off
/// as another kind or under another name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    Chunk,
    ChunkList,
    Manifest,
    Lease,
    MasterKey,
}

impl ObjectKind {
    fn label(self) -> &'static str {
        match self {
            ObjectKind::Chunk => "chunk",
            ObjectKind::ChunkList => "chunk-list",
            ObjectKind::Manifest => "manifest",
            ObjectKind::Lease => "lease",
            ObjectKind::MasterKey => "master-key",
        }
    }
}

fn associated_data(kind: ObjectKind, name: &str) -> Vec<u8> {
    format!("vmsnap-backup/1/{}/{name}", kind.label()).into_bytes()
}

/// Fills a fresh array from the operating system's generator (through rand's thread RNG, which
/// is seeded from it and reseeds itself).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Why a sealed object did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than the header and tag, or not starting with the magic bytes.
    #[error("not a sealed vmsnap-backup object ({0})")]
    NotAnEnvelope(&'static str),
    /// The envelope's layout version is not known to this build.
    #[error("sealed with envelope version {0}, this build reads version 1")]
    UnknownVersion(u8),
    /// The authentication tag does not match: altered, truncated, sealed under another key or
    /// under another name.
    #[error("authentication failed (altered, or sealed under another key or name)")]
    NotAuthentic,
    /// The payload's codec byte or its compressed data is invalid.
    #[error("payload does not decode: {0}")]
    BadPayload(String),
}

/// Argon2id parameters and salt, recorded in the key file so that any build can re-derive the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdfParams {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Argon2 version: 19 (0x13).
    pub version: u32,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Random salt, base64.
    pub salt: String,
}

impl KdfParams {
    /// RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes): about a quarter of a
    /// second on this class of machine, on every open. A fresh random salt.
    pub fn recommended() -> Self {
        Self::with_cost(64 * 1024, 3, 4)
    }

    /// Custom costs (tests use small ones) with a fresh random salt.
    pub fn with_cost(memory_kib: u32, iterations: u32, parallelism: u32) -> Self {
        KdfParams {
            algorithm: "argon2id".to_string(),
            version: 0x13,
            memory_kib,
            iterations,
            parallelism,
            salt: BASE64.encode(random_bytes::<16>()),
        }
    }

    fn derive(&self, passphrase: &[u8]) -> Result<[u8; 32], String> {
        if self.algorithm != "argon2id" || self.version != 0x13 {
            return Err(format!(
                "key derivation {} version {} is not supported (argon2id version 19 is)",
                self.algorithm, self.version
            ));
        }
        let salt = BASE64.decode(&self.salt).map_err(|e| format!("salt is not base64: {e}"))?;
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| format!("argon2id parameters: {e}"))?;
        let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        kdf.hash_password_into(passphrase, &salt, &mut out).map_err(|e| format!("argon2id: {e}"))?;
        Ok(out)
    }
}

/// A key file (`keys/<id>`): the master key sealed under the passphrase's key. Plain JSON, since
/// it must be read before anything can be decrypted; it reveals the KDF parameters only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyFile {
    /// Key file layout version: 1.
    pub version: u32,
    /// How the wrapping key is derived from the passphrase.
    pub kdf: KdfParams,
    /// Always `xchacha20-poly1305`.
    pub cipher: String,
    /// The sealed master key (envelope bytes, base64), with the repository id as associated data.
    pub wrapped_key: String,
}

/// The repository's master key, unwrapped.
#[derive(Clone)]
pub(crate) struct MasterKey([u8; 32]);

impl MasterKey {
    pub(crate) fn generate() -> Self {
        MasterKey(random_bytes())
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// Seals this key under the passphrase, for the repository `repository_id`.
    pub(crate) fn wrap(
        &self,
        passphrase: &[u8],
        kdf: KdfParams,
        repository_id: &str,
    ) -> Result<KeyFile, String> {
        let wrapping = XChaCha20Poly1305::new(&kdf.derive(passphrase)?.into());
        let sealed = seal_with(&wrapping, ObjectKind::MasterKey, repository_id, &self.0, random_bytes());
        Ok(KeyFile {
            version: 1,
            kdf,
            cipher: "xchacha20-poly1305".to_string(),
            wrapped_key: BASE64.encode(sealed),
        })
    }

    /// Opens a key file with the passphrase: `Ok(None)` when the passphrase is not the one it was
    /// sealed with, `Err` when the key file itself is unusable.
    pub(crate) fn unwrap(
        file: &KeyFile,
        passphrase: &[u8],
        repository_id: &str,
    ) -> Result<Option<Self>, String> {
        if file.version != 1 || file.cipher != "xchacha20-poly1305" {
            return Err(format!(
                "key file version {} with cipher {} is not supported",
                file.version, file.cipher
            ));
        }
        let sealed =
            BASE64.decode(&file.wrapped_key).map_err(|e| format!("wrappedKey is not base64: {e}"))?;
        let wrapping = XChaCha20Poly1305::new(&file.kdf.derive(passphrase)?.into());
        match open_with(&wrapping, ObjectKind::MasterKey, repository_id, &sealed) {
            Ok(bytes) => {
                let key: [u8; 32] =
                    bytes.try_into().map_err(|_| "the wrapped key is not 32 bytes".to_string())?;
                Ok(Some(MasterKey(key)))
            }
            Err(EnvelopeError::NotAuthentic) => Ok(None),
            Err(other) => Err(other.to_string()),
        }
    }

    pub(crate) fn keys(&self) -> Keys {
        Keys {
            chunk_id_key: blake3::derive_key(CONTEXT_CHUNK_ID, &self.0),
            seal: XChaCha20Poly1305::new(&blake3::derive_key(CONTEXT_SEAL, &self.0).into()),
        }
    }
}

/// The working keys derived from the master key.
pub(crate) struct Keys {
    chunk_id_key: [u8; 32],
    seal: XChaCha20Poly1305,
}

impl Keys {
    /// The name of an object named by its content (a chunk, a chunk list): the keyed BLAKE3 of
    /// the plain SHA-256 of its plaintext ([`Keys::chunk_name`]).
    pub(crate) fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        self.chunk_name(&ChunkSha256::of(plaintext))
    }

    /// A chunk's name and plain SHA-256.
    pub(crate) fn chunk_ref(&self, plaintext: &[u8]) -> ChunkRef {
        let sha256 = ChunkSha256::of(plaintext);
        ChunkRef { id: self.chunk_name(&sha256), sha256 }
    }

    /// The name of the content whose plain SHA-256 is `sha256`: the keyed BLAKE3 of those 32
    /// bytes. Without the key, a name says nothing about the content (no confirmation of a
    /// guessed block); with it, a chunk list need hold only each chunk's SHA-256 (format 3).
    pub(crate) fn chunk_name(&self, sha256: &ChunkSha256) -> ChunkId {
        ChunkId::from_bytes(*blake3::keyed_hash(&self.chunk_id_key, sha256.as_bytes()).as_bytes())
    }

    /// Compresses (when it helps) and seals `plaintext` as an object of `kind` named `name`.
    pub(crate) fn seal(&self, kind: ObjectKind, name: &str, plaintext: &[u8]) -> Vec<u8> {
        self.seal_with_nonce(kind, name, plaintext, random_bytes())
    }

    pub(crate) fn seal_with_nonce(
        &self,
        kind: ObjectKind,
        name: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        let compressed =
            zstd::bulk::compress(plaintext, ZSTD_LEVEL).ok().filter(|c| c.len() < plaintext.len());
        let mut payload = Vec::with_capacity(plaintext.len() + 1);
        match compressed {
            Some(c) => {
                payload.push(CODEC_ZSTD);
                payload.extend_from_slice(&c);
            }
            None => {
                payload.push(CODEC_NONE);
                payload.extend_from_slice(plaintext);
            }
        }
        seal_with(&self.seal, kind, name, &payload, nonce)
    }

    /// Authenticates, decrypts and decompresses an object sealed by [`Keys::seal`]. `max_len`
    /// bounds the decompressed size (a chunk is at most the chunk size).
    pub(crate) fn open(
        &self,
        kind: ObjectKind,
        name: &str,
        sealed: &[u8],
        max_len: usize,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let payload = open_with(&self.seal, kind, name, sealed)?;
        match payload.split_first() {
            Some((&CODEC_NONE, rest)) => Ok(rest.to_vec()),
            Some((&CODEC_ZSTD, rest)) => {
                zstd::bulk::decompress(rest, max_len).map_err(|e| EnvelopeError::BadPayload(e.to_string()))
            }
            Some((codec, _)) => Err(EnvelopeError::BadPayload(format!("unknown codec {codec}"))),
            None => Err(EnvelopeError::BadPayload("empty payload".to_string())),
        }
    }
}

fn seal_with(
    cipher: &XChaCha20Poly1305,
    kind: ObjectKind,
    name: &str,
    payload: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let aad = associated_data(kind, name);
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: payload, aad: &aad })
        // Encryption fails only for messages over 256 GiB; objects are at most a chunk or a manifest.
        .expect("XChaCha20-Poly1305 encrypts any object under 256 GiB");
    let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
    out.extend_from_slice(ENVELOPE_MAGIC);
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    kind: ObjectKind,
    name: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let nonce = envelope_parts(sealed)?.nonce;
    let aad = associated_data(kind, name);
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: &sealed[HEADER_LEN..], aad: &aad })
        .map_err(|_| EnvelopeError::NotAuthentic)
}

/// The parts of a sealed object.
struct Envelope<'a> {
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
    tag: &'a [u8],
}

/// An envelope's parts, once its header is checked.
fn envelope_parts(sealed: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    if sealed.len() < HEADER_LEN + TAG_LEN {
        return Err(EnvelopeError::NotAnEnvelope("too short"));
    }
    if &sealed[..4] != ENVELOPE_MAGIC {
        return Err(EnvelopeError::NotAnEnvelope("wrong magic bytes"));
    }
    if sealed[4] != ENVELOPE_VERSION {
        return Err(EnvelopeError::UnknownVersion(sealed[4]));
    }
    let nonce = sealed[5..HEADER_LEN].try_into().expect("header length checked");
    let (ciphertext, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
    Ok(Envelope { nonce, ciphertext, tag })
}

/// A worker's buffers for [`Keys::open_aligned`], reused from one object to the next.
#[derive(Debug, Default)]
pub(crate) struct OpenBuffers {
    payload: Vec<u8>,
    inflated: Vec<u8>,
}

impl Keys {
    /// [`Keys::open`] into `buffers`, for the bulk of a restore: the ciphertext is decrypted
    /// straight into them (no copy of the sealed object first, no allocation), and the plaintext
    /// returned starts at an address aligned to [`PLAINTEXT_ALIGN`], so that it can be written
    /// around the page cache as it is.
    pub(crate) fn open_aligned<'b>(
        &self,
        kind: ObjectKind,
        name: &str,
        sealed: &[u8],
        max_len: usize,
        buffers: &'b mut OpenBuffers,
    ) -> Result<&'b [u8], EnvelopeError> {
        let Envelope { nonce, ciphertext, tag } = envelope_parts(sealed)?;
        // The payload's first byte is its codec: it goes just before an aligned address.
        let payload = aligned(&mut buffers.payload, 1, ciphertext.len());
        let buffer = InOutBuf::new(ciphertext, payload).expect("the same length");
        let tag = tag.try_into().expect("a tag's length");
        self.seal
            .decrypt_inout_detached(&XNonce::from(nonce), &associated_data(kind, name), buffer, tag)
            .map_err(|_| EnvelopeError::NotAuthentic)?;
        match payload.split_first() {
            Some((&CODEC_NONE, rest)) => Ok(rest),
            Some((&CODEC_ZSTD, rest)) => {
                let inflated = aligned(&mut buffers.inflated, 0, max_len);
                let len = zstd::bulk::decompress_to_buffer(rest, &mut *inflated)
                    .map_err(|e| EnvelopeError::BadPayload(e.to_string()))?;
                Ok(&inflated[..len])
            }
            Some((codec, _)) => Err(EnvelopeError::BadPayload(format!("unknown codec {codec}"))),
            None => Err(EnvelopeError::BadPayload("empty payload".to_string())),
        }
    }
}

/// `len` bytes of `buffer` (grown if need be) whose byte `lead` is at an address aligned to
/// [`PLAINTEXT_ALIGN`].
fn aligned(buffer: &mut Vec<u8>, lead: usize, len: usize) -> &mut [u8] {
    if buffer.len() < len + PLAINTEXT_ALIGN {
        *buffer = vec![0; len + PLAINTEXT_ALIGN];
    }
    let at = buffer.as_ptr() as usize + lead;
    let skew = at.next_multiple_of(PLAINTEXT_ALIGN) - at;
    &mut buffer[skew..skew + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap_kdf() -> KdfParams {
        KdfParams::with_cost(64, 1, 1)
    }

    #[test]
    fn a_sealed_object_opens_only_under_its_kind_and_name() {
        let keys = MasterKey::generate().keys();
        let data = vec![7u8; 10_000];
        let sealed = keys.seal(ObjectKind::Chunk, "a", &data);
        assert!(sealed.len() < 200, "repetitive data is compressed: {} bytes", sealed.len());
        assert_eq!(keys.open(ObjectKind::Chunk, "a", &sealed, 10_000).unwrap(), data);
        assert_eq!(keys.open(ObjectKind::Chunk, "b", &sealed, 10_000), Err(EnvelopeError::NotAuthentic));
        assert_eq!(keys.open(ObjectKind::Manifest, "a", &sealed, 10_000), Err(EnvelopeError::NotAuthentic));
        let other = MasterKey::generate().keys();
        assert_eq!(other.open(ObjectKind::Chunk, "a", &sealed, 10_000), Err(EnvelopeError::NotAuthentic));
    }

    #[test]
    fn every_flipped_bit_of_an_envelope_is_detected() {
        let keys = MasterKey::generate().keys();
        let sealed = keys.seal(ObjectKind::Chunk, "x", b"some chunk content that is not compressible 0123");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                keys.open(ObjectKind::Chunk, "x", &bad, 1 << 20).is_err(),
                "bit flip at byte {i} undetected"
            );
        }
    }

    /// Opening into a worker's buffers gives what [`Keys::open`] gives, whether the payload was
    /// compressed or not and whatever size came before, page-aligned; and refuses what it refuses.
    #[test]
    fn an_object_opened_into_buffers_is_the_plain_open_aligned_to_a_page() {
        let keys = MasterKey::generate().keys();
        let noise: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let text = b"a line of text, again and again. ".repeat(4000);
        let buffers = &mut OpenBuffers::default();
        for data in [&noise[..], &text[..], &noise[..1000], b"", &text[..10]] {
            let sealed = keys.seal(ObjectKind::Chunk, "c", data);
            let opened = keys.open_aligned(ObjectKind::Chunk, "c", &sealed, 300_000, buffers).unwrap();
            assert_eq!(opened, data);
            assert_eq!(opened.as_ptr() as usize % PLAINTEXT_ALIGN, 0, "aligned for {} bytes", data.len());
            assert_eq!(keys.open(ObjectKind::Chunk, "c", &sealed, 300_000).unwrap(), data);
        }
        let sealed = keys.seal(ObjectKind::Chunk, "c", &text);
        let refused = |sealed: &[u8], name: &str, max_len: usize| {
            keys.open_aligned(ObjectKind::Chunk, name, sealed, max_len, &mut OpenBuffers::default())
                .unwrap_err()
        };
        assert_eq!(refused(&sealed, "d", text.len()), EnvelopeError::NotAuthentic);
        assert!(matches!(refused(&sealed, "c", text.len() - 1), EnvelopeError::BadPayload(_)));
        assert_eq!(refused(&sealed[..HEADER_LEN + 15], "c", 100), EnvelopeError::NotAnEnvelope("too short"));
        for i in [0, 4, 5, HEADER_LEN, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            let error = refused(&bad, "c", text.len());
            assert!(!matches!(error, EnvelopeError::BadPayload(_)), "byte {i}: {error:?}");
        }
    }

    #[test]
    fn a_key_file_opens_with_its_passphrase_only_and_for_its_repository_only() {
        let master = MasterKey::from_bytes([9; 32]);
        let file = master.wrap(b"right", cheap_kdf(), "repo-1").unwrap();
        assert_eq!(MasterKey::unwrap(&file, b"right", "repo-1").unwrap().map(|k| k.0), Some([9; 32]));
        assert!(MasterKey::unwrap(&file, b"wrong", "repo-1").unwrap().is_none());
        assert!(MasterKey::unwrap(&file, b"right", "repo-2").unwrap().is_none());
    }

    #[test]
    fn chunk_names_depend_on_the_key() {
        let a = MasterKey::from_bytes([1; 32]).keys();
        let b = MasterKey::from_bytes([2; 32]).keys();
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), ChunkId::from_bytes(*blake3::hash(b"x").as_bytes()));
    }
}
