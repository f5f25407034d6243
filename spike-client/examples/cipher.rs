//! Encryption as a service: Nexus encrypts and decrypts with a key that never leaves it.
//! Needs the superuser, the lite-workload role, or a policy granting `execute`.
//!
//! ```sh
//! source .spike-dev/env     # after `spike dev`
//! cargo run -p spike-client --example cipher
//! ```

use spike_client::{Error, Spike};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let spike = Spike::new().await?;

    // JSON mode: version, nonce and ciphertext as separate fields.
    let sealed = spike.encrypt(b"card 4111-1111-1111-1111").await?;
    println!(
        "JSON mode: version {}, {}-byte nonce, {}-byte ciphertext",
        sealed.version,
        sealed.nonce.len(),
        sealed.ciphertext.len()
    );
    let opened = spike.decrypt(&sealed).await?;
    assert_eq!(&opened[..], b"card 4111-1111-1111-1111");

    // Streaming mode: one framed blob, good for files (`spike cipher encrypt -f in -o out`).
    let framed = spike.encrypt_bytes(&[0u8, 1, 2, 3, 255]).await?;
    println!("stream mode: {} bytes framed", framed.len());
    assert_eq!(&spike.decrypt_bytes(&framed).await?[..], &[0u8, 1, 2, 3, 255]);

    // A tampered ciphertext is refused, never decrypted to garbage.
    let mut tampered = framed.clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 1;
    }
    match spike.decrypt_bytes(&tampered).await {
        Err(e) => println!("tampered ciphertext refused: {e}"),
        Ok(_) => return Err(Error::Protocol("a tampered ciphertext decrypted".into())),
    }
    println!("cipher: ok");
    Ok(())
}
