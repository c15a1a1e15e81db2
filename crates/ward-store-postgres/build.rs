//! Build script: recompile when migrations change (`sqlx::migrate!` embeds them), and turn
//! `WARD_TEST_POSTGRES=skip` into the `ward_pg_skip` cfg so the integration tests can skip
//! explicitly (the shared conformance macro has no run-time skip).
fn main() {
    println!("cargo::rerun-if-changed=migrations");
    println!("cargo::rerun-if-env-changed=WARD_TEST_POSTGRES");
    println!("cargo::rustc-check-cfg=cfg(ward_pg_skip)");
    if std::env::var("WARD_TEST_POSTGRES").as_deref() == Ok("skip") {
        println!("cargo::rustc-cfg=ward_pg_skip");
    }
}
