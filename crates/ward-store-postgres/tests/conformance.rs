//! The shared ward-store conformance suite against PostgreSQL, one schema per test.

#[cfg(not(ward_pg_skip))]
mod common;

#[cfg(not(ward_pg_skip))]
ward_store::conformance_tests!(common::fresh_store());

#[cfg(ward_pg_skip)]
#[test]
fn postgres_tests_skipped() {
    eprintln!("WARD_TEST_POSTGRES=skip: PostgreSQL conformance tests skipped");
}
