// Rebuild when a migration is added: `sqlx::migrate!` embeds the directory at compile time
// and cannot tell Cargo to watch it on stable Rust (what `sqlx migrate build-script` writes).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
