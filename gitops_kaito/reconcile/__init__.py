"""One pass: load, render, read live, plan, apply, assess health, write status back to git; offline plans.
Wires core/ to adapters/ and provision/; never imports service/, cli/ or the sandbox."""
