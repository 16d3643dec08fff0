fn main() {
    eprintln!("sluice: not yet wired");
    std::process::exit(2);
}
