//! Host facts gathered in one round trip: OS, kernel, arch, CPUs, memory, GPUs.
