//! A component of the `wasi:cli/command` world, used to check that the host refuses components of
//! another world with a clear error.

fn main() {
    println!("this component is not a cdc-host transform");
}
