//! Generates include/rxe.h with cbindgen on every build, so the committed header is always what
//! the code says (CI checks that the committed file did not change).

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = match cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            // A syntax error in the sources: rustc reports it better; keep the old header.
            println!("cargo:warning=cbindgen: {e}");
            return;
        }
    };
    let out = dir.join("include").join("rxe.h");
    // write_to_file leaves the file untouched when the content is the same.
    bindings.write_to_file(out);
}
